/* SPDX-License-Identifier: MIT */
/* Compiles llhttp's generated api.c as the distribution ships it (node-llhttp). */
#include AP_LLHTTP_API_C
