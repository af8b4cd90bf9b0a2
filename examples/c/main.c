/* Calls SELU, compiled by Ferrax into libselu.so for any length, from C: directly through the
 * generated header, then its gradient by name through the runtime, which loads the library
 * and checks shapes.
 *
 *   ferrax compile examples/selu.py selu --sig "x: f32[?]" \
 *       --entry "dselu=jax.grad(lambda x: jnp.sum(selu(x)))" --emit lib -o build/libselu.so
 *   cc -Wall -Werror -I build -I runtime/include examples/c/main.c -o build/selu_c \
 *       -L build -lselu -L target/release -lferrax_runtime \
 *       -Wl,-rpath,$PWD/build:$PWD/target/release
 *   build/selu_c build/libselu.so
 */
#include <stdio.h>
#include <string.h>

#include "ferrax_runtime.h"
#include "libselu.h"

#define N 8

static void print(const char *name, const float *values) {
    printf("%s:", name);
    for (int i = 0; i < N; i++) printf(" %.9g", values[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    const float x[N] = {-2.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 2.0f, 3.0f};
    float y[N];
    if (selu(N, x, y) != 0) {
        fprintf(stderr, "selu failed\n");
        return 1;
    }
    print("selu", y);
    if (argc < 2) return 0;

    /* The gradient by name through the runtime: load the library, call, check errors. */
    char *error = NULL;
    FerraxLibrary *library = ferrax_library_open(argv[1], &error);
    if (library == NULL) {
        fprintf(stderr, "%s\n", error);
        ferrax_string_free(error);
        return 1;
    }
    size_t shape[1] = {N};
    FerraxArray *input = ferrax_array_new(FERRAX_FLOAT32, 1, shape);
    memcpy(ferrax_array_data(input), x, sizeof x);
    const FerraxArray *inputs[1] = {input};
    FerraxArray *outputs[1] = {NULL};
    int status = ferrax_library_call(library, "dselu", inputs, 1, outputs, 1, &error);
    if (status == 0) {
        print("dselu", ferrax_array_data(outputs[0]));
        ferrax_array_free(outputs[0]);
    } else {
        printf("dselu: %s\n", error);
        ferrax_string_free(error);
    }

    /* A wrong shape is an error value, not a bad call. */
    size_t wrong[2] = {2, 4};
    FerraxArray *matrix = ferrax_array_new(FERRAX_FLOAT32, 2, wrong);
    const FerraxArray *bad[1] = {matrix};
    status = ferrax_library_call(library, "selu", bad, 1, outputs, 1, &error);
    printf("wrong shape: status %d: %s\n", status, error ? error : "");
    ferrax_string_free(error);
    ferrax_array_free(matrix);
    ferrax_array_free(input);
    ferrax_library_close(library);
    return status == 0;
}
