/* The Ferrax runtime's C API: arrays, .npy files, and calling the entries of a library made
 * by `ferrax compile --emit lib` by name, with their dtypes and shapes checked.
 *
 * Link with libferrax_runtime.so (or libferrax_runtime.a, plus -lpthread -ldl -lm).
 * A function that can fail returns NULL or a non-zero code and, when `error` is not NULL,
 * stores a message in *error, to be freed with ferrax_string_free. */
#ifndef FERRAX_RUNTIME_H
#define FERRAX_RUNTIME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types. */
enum {
    FERRAX_BOOL = 0,
    FERRAX_INT32 = 1,
    FERRAX_INT64 = 2,
    FERRAX_FLOAT32 = 3,
    FERRAX_FLOAT64 = 4
};

typedef struct FerraxArray FerraxArray;
typedef struct FerraxLibrary FerraxLibrary;

/* A zero-filled row-major array with 64-byte-aligned elements; NULL for an unknown dtype. */
FerraxArray *ferrax_array_new(int dtype, size_t rank, const size_t *shape);
void ferrax_array_free(FerraxArray *array);
void *ferrax_array_data(FerraxArray *array);
int ferrax_array_dtype(const FerraxArray *array);
size_t ferrax_array_rank(const FerraxArray *array);
const size_t *ferrax_array_shape(const FerraxArray *array);

FerraxArray *ferrax_array_read_npy(const char *path, char **error);
int ferrax_array_write_npy(const FerraxArray *array, const char *path, char **error);

FerraxLibrary *ferrax_library_open(const char *path, char **error);
void ferrax_library_close(FerraxLibrary *library);

/* Calls entry `name` on `inputs`; on success stores n_outputs new arrays in `outputs`
 * (free each with ferrax_array_free) and returns 0. */
int ferrax_library_call(const FerraxLibrary *library, const char *name,
                        const FerraxArray *const *inputs, size_t n_inputs,
                        FerraxArray **outputs, size_t n_outputs, char **error);

void ferrax_string_free(char *text);

#ifdef __cplusplus
}
#endif

#endif
