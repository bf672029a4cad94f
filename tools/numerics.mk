# Numeric settings of every notebook run: included by the Makefile (make test, make book, make notebooks,
# make sweep) and read by tools/numerics.py for Python entry points that start kernels. `?=`: a value set in the
# environment wins, e.g. `OMP_NUM_THREADS=2 make test`. The README ("Numeric settings") says what each moved when
# measured; `make numerics` prints the settings in force.
#
# Threads of torch's intra-op pool (OpenMP) and of MKL, torch's BLAS on x86-64: one, so that results do not depend
# on the machine's number of cores. The book's problems are small: a second thread gains little, and with
# MKL_CBWR=COMPATIBLE (below) on a busy 2-core machine it made the Diff All Jacobian four times slower.
OMP_NUM_THREADS ?= 1
MKL_NUM_THREADS ?= $(OMP_NUM_THREADS)
# ITK's threads (SimpleITK). ITK starts one per core by default, and page 05's SimpleITK registrations, whose own
# threads are set to 1, still change with it (their pyramid's filters follow this default): with 1, 2, 3, 4 and 8
# threads the same pairs ended at five different results, parameter errors up to 6% apart, enough to move a stored
# digit. Fixed at 2, the count the references were written with, whatever the machine's cores.
ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS ?= 2
# MKL's conditional numerical reproducibility: one code path on every x86-64 CPU, Intel or AMD, AVX2 or AVX-512.
MKL_CBWR ?= COMPATIBLE
# SciPy's OpenBLAS (the small LAPACK calls of trust-exact and the pre-registration): one thread.
OPENBLAS_NUM_THREADS ?= 1
# Python's hash seed, for any code that iterates over a set.
PYTHONHASHSEED ?= 0
# torch's own kernels (ATen) and SciPy's OpenBLAS pick their SIMD kernels at start-up: an AVX-512 machine would
# run other kernels, with other round-off, than an AVX2 machine (OpenBLAS's choice moved trust-exact's iteration
# counts). Where the CPU has AVX2, every machine runs the AVX2 (Haswell) kernels.
ifeq ($(CPU_AVX2),yes)
ATEN_CPU_CAPABILITY ?= avx2
OPENBLAS_CORETYPE ?= Haswell
endif
