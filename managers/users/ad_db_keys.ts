/**
 * The keys an `[adDB]` table may hold, apart from the LDAP user database
 * itself: the kind registry (`config/kinds.ts`) knows them without loading
 * it, as it loads it only for a configuration that has one.
 *
 * @module
 */

/** The keys of an `[adDB]` table besides `name`. */
export const AD_DB_KEYS = [
  "addr",
  "suff",
  "bdn",
  "user",
  "pass",
  "userFilter",
  "bindAs",
  "nameAttr",
  "tls",
  "caFile",
  "timeout",
];
