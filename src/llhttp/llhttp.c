/* SPDX-License-Identifier: MIT */
/* Compiles llhttp's generated llhttp.c as the distribution ships it (node-llhttp). */
#include AP_LLHTTP_LLHTTP_C
