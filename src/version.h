/* SPDX-License-Identifier: BSD-2-Clause */
/* The version string, from configure. */
#ifndef AP_VERSION_H
#define AP_VERSION_H


#define AP_VERSION PACKAGE_VERSION

#endif
