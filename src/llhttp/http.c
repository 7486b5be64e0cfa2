/* SPDX-License-Identifier: MIT */
/* Compiles llhttp's generated http.c as the distribution ships it (node-llhttp). */
#include AP_LLHTTP_HTTP_C
