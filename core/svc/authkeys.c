/* authkeys.c - the accounts' signing keys on disk (the contract is in authkeys.h). */
#include "authkeys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "jsonread.h"
#include "jsontext.h"
#include "jwtsign.h"

#define KID_MAX 48

typedef struct {
  char kid[KID_MAX];
  uint64_t created_ms;
  unsigned char seed[32];
} key_t_;

struct cr_authkeys_s {
  char dir[1024];  /* DIR/accounts */
  char path[1100]; /* its keys.json */
  char lock[1100];
  cr_authkeys_opts_t o;
  key_t_ keys[CR_AUTHKEYS_MAX]; /* oldest first; the last signs */
  int n;
  struct stat seen;     /* the file as last read */
  uint64_t checked_ms;  /* last look at the file */
  uint64_t expires_ms;  /* when a key held leaves its grace (the verifier is then rebuilt) */
  cr_jwt_keys_t *verifier;
  cr_buf_t jwks;
};

static int fail(char *err, size_t errlen, const char *what, const char *path) {
  snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
  return -1;
}

/* The key i verifies until: the newest forever, a replaced one for the grace after its successor came. */
static uint64_t valid_until(const cr_authkeys_t *k, int i) {
  if (i == k->n - 1) return UINT64_MAX;
  return k->keys[i + 1].created_ms + (uint64_t)(k->o.grace * 1000);
}

/* The verifier and the JWKS from the keys still in grace. */
static int rebuild(cr_authkeys_t *k, char *err, size_t errlen) {
  uint64_t now = cr_wall_ms();
  cr_buf_t j = CR_BUF_INIT;
  uint64_t next = UINT64_MAX;
  int bad = cr_buf_append_str(&j, "{\"keys\":[");
  int first = 1;
  for (int i = k->n - 1; i >= 0 && !bad; i--) {
    uint64_t until = valid_until(k, i);
    if (until <= now) continue;
    if (until < next) next = until;
    if (!first) bad |= cr_buf_putc(&j, ',');
    first = 0;
    bad |= cr_jws_ed25519_jwk(k->keys[i].seed, k->keys[i].kid, &j);
  }
  bad |= cr_buf_append_str(&j, "]}");
  /* NUL-terminated: cr_authkeys_jwks hands out a C string. */
  if (!bad && !(bad = cr_buf_reserve(&j, 1) != 0)) j.data[j.len] = '\0';
  if (bad) {
    cr_buf_free(&j);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  cr_jwt_keys_t *v = cr_jwt_keys_parse(j.data, j.len, err, errlen);
  if (!v) {
    cr_buf_free(&j);
    return -1;
  }
  cr_jwt_keys_free(k->verifier);
  k->verifier = v;
  cr_buf_free(&k->jwks);
  k->jwks = j;
  k->expires_ms = next;
  return 0;
}

static int parse(const char *text, size_t len, key_t_ *keys, int *n, char *err, size_t errlen) {
  cr_jr_doc_t *d = cr_jr_parse(text, len, err, errlen);
  if (!d) return -1;
  const cr_jr_val_t *arr = cr_jr_get(cr_jr_root(d), "keys");
  int c = 0, rc = 0;
  for (const cr_jr_val_t *e = arr && arr->type == CR_JR_ARRAY ? arr->child : NULL; e; e = e->next) {
    const cr_jr_val_t *kid = cr_jr_get(e, "kid"), *cr = cr_jr_get(e, "created"), *dd = cr_jr_get(e, "d");
    size_t sl = 0;
    if (c == CR_AUTHKEYS_MAX || !kid || kid->type != CR_JR_STRING || kid->len == 0 || kid->len >= KID_MAX || !cr ||
        cr->type != CR_JR_NUMBER || cr->num < 0 || !dd || dd->type != CR_JR_STRING ||
        cr_b64url_decode(dd->str, dd->len, keys[c].seed, 32, &sl) || sl != 32) {
      snprintf(err, errlen, "keys[%d] is malformed", c);
      rc = -1;
      break;
    }
    memcpy(keys[c].kid, kid->str, kid->len + 1);
    keys[c].created_ms = (uint64_t)cr->num;
    c++;
  }
  if (!rc && c == 0) {
    snprintf(err, errlen, "no keys");
    rc = -1;
  }
  cr_jr_free(d);
  *n = c;
  return rc;
}

/* Reads the file into k (when it changed, or always with force). */
static int load(cr_authkeys_t *k, int force, char *err, size_t errlen) {
  struct stat st;
  if (stat(k->path, &st)) return fail(err, errlen, "cannot read", k->path);
  if (!force && st.st_ino == k->seen.st_ino && st.st_size == k->seen.st_size &&
      st.st_mtim.tv_sec == k->seen.st_mtim.tv_sec && st.st_mtim.tv_nsec == k->seen.st_mtim.tv_nsec)
    return 0;
  char *text = NULL;
  size_t len = 0;
  if (cr_read_file(k->path, 1 << 20, &text, &len)) return fail(err, errlen, "cannot read", k->path);
  key_t_ keys[CR_AUTHKEYS_MAX];
  int n = 0;
  char why[200];
  int rc = parse(text, len, keys, &n, why, sizeof why);
  OPENSSL_cleanse(text, len);
  free(text);
  if (rc) {
    snprintf(err, errlen, "%s: %s", k->path, why);
    OPENSSL_cleanse(keys, sizeof keys);
    return -1;
  }
  memcpy(k->keys, keys, sizeof keys[0] * (size_t)n);
  k->n = n;
  OPENSSL_cleanse(keys, sizeof keys);
  k->seen = st;
  return rebuild(k, err, errlen);
}

/* Writes keys[0..n) to the file: a temporary file, then rename. Under the lock. */
static int store(cr_authkeys_t *k, const key_t_ *keys, int n, char *err, size_t errlen) {
  cr_buf_t b = CR_BUF_INIT;
  int bad = cr_buf_append_str(&b, "{\"keys\":[\n");
  for (int i = 0; i < n && !bad; i++) {
    if (i) bad |= cr_buf_append_str(&b, ",\n");
    bad |= cr_buf_append_str(&b, "{\"kid\":");
    bad |= cr_json_escape(&b, keys[i].kid, strlen(keys[i].kid));
    bad |= cr_buf_printf(&b, ",\"created\":%llu,\"d\":\"", (unsigned long long)keys[i].created_ms);
    bad |= cr_b64url_append(&b, keys[i].seed, 32);
    bad |= cr_buf_append_str(&b, "\"}");
  }
  bad |= cr_buf_append_str(&b, "\n]}\n");
  char tmp[1200];
  snprintf(tmp, sizeof tmp, "%s.tmp", k->path);
  int fd = bad ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = 0;
  if (fd < 0 || write(fd, b.data, b.len) != (ssize_t)b.len || fsync(fd) || close(fd) || rename(tmp, k->path)) {
    rc = fail(err, errlen, "cannot write", tmp);
    if (fd >= 0) unlink(tmp);
  }
  if (b.data) OPENSSL_cleanse(b.data, b.len);
  cr_buf_free(&b);
  return rc;
}

static int new_key(key_t_ *key, uint64_t now) {
  unsigned char r[6];
  if (RAND_bytes(key->seed, 32) != 1 || RAND_bytes(r, sizeof r) != 1) return -1;
  cr_buf_t b = CR_BUF_INIT;
  int bad = cr_buf_printf(&b, "%llx-", (unsigned long long)now) || cr_b64url_append(&b, r, sizeof r);
  if (!bad) snprintf(key->kid, sizeof key->kid, "%s", b.data);
  cr_buf_free(&b);
  key->created_ms = now;
  return bad ? -1 : 0;
}

/* Under the lock: re-reads the file, adds a key when force or due (or when
 * there is none), drops keys past their grace, writes it back. */
static int rotate_locked(cr_authkeys_t *k, int force, char *kid_out, size_t kidlen, char *err, size_t errlen) {
  int lfd = open(k->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lfd < 0) return fail(err, errlen, "cannot open", k->lock);
  if (flock(lfd, LOCK_EX)) {
    close(lfd);
    return fail(err, errlen, "cannot lock", k->lock);
  }
  key_t_ keys[CR_AUTHKEYS_MAX + 1];
  int n = 0, rc = 0;
  char *text = NULL;
  size_t len = 0;
  int r = cr_read_file(k->path, 1 << 20, &text, &len);
  if (r == 0) {
    char why[200];
    rc = parse(text, len, keys, &n, why, sizeof why);
    if (rc) snprintf(err, errlen, "%s: %s", k->path, why);
    OPENSSL_cleanse(text, len);
    free(text);
  } else if (r != -ENOENT) {
    rc = fail(err, errlen, "cannot read", k->path);
  }
  uint64_t now = cr_wall_ms();
  int due = force || n == 0 ||
            (k->o.rotate_after > 0 && keys[n - 1].created_ms + (uint64_t)(k->o.rotate_after * 1000) <= now);
  if (!rc && due) {
    /* Keys past their grace, and the oldest when the list is full, go. */
    int keep = 0;
    for (int i = 0; i < n; i++) {
      uint64_t until = i == n - 1 ? UINT64_MAX : keys[i + 1].created_ms + (uint64_t)(k->o.grace * 1000);
      if (until > now) keys[keep++] = keys[i];
    }
    n = keep;
    if (n == CR_AUTHKEYS_MAX) {
      memmove(keys, keys + 1, sizeof keys[0] * (size_t)(n - 1));
      n--;
    }
    if (new_key(&keys[n], now)) {
      snprintf(err, errlen, "cannot make a key (OpenSSL's random bytes failed)");
      rc = -1;
    } else {
      n++;
      rc = store(k, keys, n, err, errlen);
      if (!rc && kid_out) snprintf(kid_out, kidlen, "%s", keys[n - 1].kid);
    }
  }
  OPENSSL_cleanse(keys, sizeof keys);
  flock(lfd, LOCK_UN);
  close(lfd);
  if (rc) return rc;
  return load(k, 0, err, errlen);
}

cr_authkeys_t *cr_authkeys_open(const char *data_dir, const cr_authkeys_opts_t *o, char *err, size_t errlen) {
  cr_authkeys_t *k = calloc(1, sizeof *k);
  if (!k) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  k->o = *o;
  if (k->o.grace < 0) k->o.grace = 0;
  snprintf(k->dir, sizeof k->dir, "%s/accounts", data_dir);
  snprintf(k->path, sizeof k->path, "%s/keys.json", k->dir);
  snprintf(k->lock, sizeof k->lock, "%s/keys.lock", k->dir);
  if ((mkdir(data_dir, 0700) && errno != EEXIST) || (mkdir(k->dir, 0700) && errno != EEXIST)) {
    fail(err, errlen, "cannot create", k->dir);
    free(k);
    return NULL;
  }
  struct stat st;
  int rc = stat(k->path, &st) == 0 ? load(k, 1, err, errlen) : rotate_locked(k, 0, NULL, 0, err, errlen);
  if (rc == 0 && k->o.rotate_after > 0) rc = cr_authkeys_refresh(k, 1, err, errlen);
  if (rc) {
    cr_authkeys_free(k);
    return NULL;
  }
  k->checked_ms = cr_wall_ms();
  return k;
}

void cr_authkeys_free(cr_authkeys_t *k) {
  if (!k) return;
  cr_jwt_keys_free(k->verifier);
  cr_buf_free(&k->jwks);
  OPENSSL_cleanse(k->keys, sizeof k->keys);
  free(k);
}

int cr_authkeys_refresh(cr_authkeys_t *k, int force, char *err, size_t errlen) {
  uint64_t now = cr_wall_ms();
  if (!force && now < k->checked_ms + 1000 && now < k->expires_ms) return 0;
  k->checked_ms = now;
  if (load(k, 0, err, errlen)) return -1;
  if (k->o.rotate_after > 0 && k->keys[k->n - 1].created_ms + (uint64_t)(k->o.rotate_after * 1000) <= now &&
      rotate_locked(k, 0, NULL, 0, err, errlen))
    return -1;
  /* A key left its grace since the verifier was made. */
  if (now >= k->expires_ms) return rebuild(k, err, errlen);
  return 0;
}

int cr_authkeys_rotate(cr_authkeys_t *k, char *kid_out, size_t kidlen, char *err, size_t errlen) {
  return rotate_locked(k, 1, kid_out, kidlen, err, errlen);
}

int cr_authkeys_sign(cr_authkeys_t *k, const char *payload, size_t plen, cr_buf_t *out) {
  const key_t_ *key = &k->keys[k->n - 1];
  char header[128];
  int hl = snprintf(header, sizeof header, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}", key->kid);
  return cr_jws_sign_ed25519(key->seed, header, (size_t)hl, payload, plen, out);
}

const cr_jwt_keys_t *cr_authkeys_verifier(cr_authkeys_t *k) { return k->verifier; }

const char *cr_authkeys_jwks(cr_authkeys_t *k, size_t *len) {
  *len = k->jwks.len;
  return k->jwks.data;
}

const char *cr_authkeys_kid(const cr_authkeys_t *k) { return k->keys[k->n - 1].kid; }
