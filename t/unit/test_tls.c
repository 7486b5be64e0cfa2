/* SPDX-License-Identifier: BSD-2-Clause */
/* Unit tests: SNI name matching, ticket keys in shared memory. */
#include <string.h>

#include "shm.h"
#include "tls.h"
#include "tap.h"

int main(void)
{
    ok(ap_tls_name_match("example.com", "example.com"), "exact");
    ok(ap_tls_name_match("example.com", "EXAMPLE.Com"), "case-insensitive");
    ok(ap_tls_name_match("example.com", "example.com."), "absolute name");
    ok(!ap_tls_name_match("example.com", "www.example.com"), "no suffix match");
    ok(!ap_tls_name_match("example.com", "example.co"), "no prefix match");
    ok(ap_tls_name_match("*.example.com", "a.example.com"), "wildcard, one label");
    ok(ap_tls_name_match("*.example.com", "A-b.Example.COM"), "wildcard, case-insensitive");
    ok(!ap_tls_name_match("*.example.com", "example.com"), "wildcard needs a label");
    ok(!ap_tls_name_match("*.example.com", ".example.com"), "wildcard label not empty");
    ok(!ap_tls_name_match("*.example.com", "a.b.example.com"), "wildcard spans one label");
    ok(!ap_tls_name_match("*.example.com", "aexample.com"), "wildcard needs the dot");
    ok(!ap_tls_name_match("example.com", ""), "empty host");

    ap_shm_t *shm = ap_shm_create(2);
    ap_ticket_key_t k[2];
    ok(shm != NULL, "shm created");
    is_int(ap_shm_tickets_get(shm, k), 0, "no keys at first");
    ok(ap_shm_tickets_rotate(shm) == 0, "rotate");
    is_int(ap_shm_tickets_get(shm, k), 1, "one key");
    ap_ticket_key_t first = k[0];
    ok(ap_shm_tickets_rotate(shm) == 0, "rotate again");
    is_int(ap_shm_tickets_get(shm, k), 2, "two keys");
    ok(memcmp(&k[1], &first, sizeof(first)) == 0, "the old current key is the previous one");
    ok(memcmp(k[0].name, first.name, 16) != 0 && memcmp(k[0].aes_key, first.aes_key, 32) != 0,
       "the new key is another");
    ap_ticket_key_t second = k[0];
    ap_shm_tickets_rotate(shm);
    is_int(ap_shm_tickets_get(shm, k), 2, "still two keys");
    ok(memcmp(&k[1], &second, sizeof(second)) == 0 && memcmp(&k[0], &first, sizeof(first)) != 0 &&
           memcmp(&k[1], &first, sizeof(first)) != 0,
       "the oldest key is forgotten");
    ap_shm_destroy(shm);
    return done_testing();
}
