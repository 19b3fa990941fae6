// glibc allocator tuning (mallopt, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD); header only, part of libc.
#include <malloc.h>
