// CCyphonicOpenSSL: OpenSSL libcrypto as a system library, plus tiny inline helpers
// for what Swift cannot call directly (function-like macros, MBSTRING flags, STACK_OF
// accessors). Nothing here holds state.
#ifndef CCYPHONIC_OPENSSL_SHIM_H
#define CCYPHONIC_OPENSSL_SHIM_H

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

static inline void ccy_openssl_free(void *ptr) { OPENSSL_free(ptr); }

/// Bytes held by a memory BIO (BIO_get_mem_data is a macro).
static inline long ccy_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

/// MBSTRING_ASC is a composite macro that Swift does not import.
static inline int ccy_mbstring_utf8(void) { return MBSTRING_UTF8; }

/// Adds one X.509v3 extension given in OpenSSL's config syntax ("DNS:a,IP:1.2.3.4").
/// Returns 1 on success, 0 on failure (the error queue says why).
static inline int ccy_x509_add_ext(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/// Adds one CRL extension in config syntax (for example authorityKeyIdentifier).
static inline int ccy_crl_add_ext(X509_CRL *crl, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, crl, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) return 0;
    int ok = X509_CRL_add_ext(crl, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/// Subject-alternative-name access without STACK_OF macros.
static inline GENERAL_NAMES *ccy_x509_get_sans(const X509 *cert) {
    return (GENERAL_NAMES *)X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
}
static inline int ccy_sans_count(const GENERAL_NAMES *names) { return sk_GENERAL_NAME_num(names); }
static inline void ccy_sans_free(GENERAL_NAMES *names) { GENERAL_NAMES_free(names); }
/// The i-th name's type (GEN_DNS, GEN_IPADD, ...) and its raw bytes.
static inline int ccy_sans_at(const GENERAL_NAMES *names, int i, const unsigned char **data, int *length) {
    const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
    if (name == NULL) return -1;
    const ASN1_STRING *s = NULL;
    switch (name->type) {
    case GEN_DNS: s = name->d.dNSName; break;
    case GEN_IPADD: s = name->d.iPAddress; break;
    default: *data = NULL; *length = 0; return name->type;
    }
    *data = ASN1_STRING_get0_data(s);
    *length = ASN1_STRING_length(s);
    return name->type;
}

/// CRL entries without STACK_OF macros.
static inline int ccy_crl_revoked_count(X509_CRL *crl) {
    STACK_OF(X509_REVOKED) *revoked = X509_CRL_get_REVOKED(crl);
    return revoked == NULL ? 0 : sk_X509_REVOKED_num(revoked);
}
static inline const X509_REVOKED *ccy_crl_revoked_at(X509_CRL *crl, int i) {
    return sk_X509_REVOKED_value(X509_CRL_get_REVOKED(crl), i);
}

#endif
