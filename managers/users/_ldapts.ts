/**
 * ldapts (the LDAP client of `adDB`), loaded only for a configuration that
 * has an `[adDB]`: a gateway without one never pays the memory it takes
 * once loaded (about 8 MiB). Building an adDB from its table awaits
 * {@link loadLdapts}; the adDB's code then reaches the module through
 * {@link ldapts}. Private to this folder.
 *
 * @module
 */
type Ldapts = typeof import("ldapts");

let loaded: Ldapts | undefined;

/** Loads ldapts once; later calls answer the same module. */
export async function loadLdapts(): Promise<Ldapts> {
  return loaded ??= await import("ldapts");
}

/** ldapts, once {@link loadLdapts} has been awaited. */
export function ldapts(): Ldapts {
  if (loaded === undefined) {
    throw new Error(
      "the LDAP client is used before it was loaded (loadLdapts): a bug in pmproxy",
    );
  }
  return loaded;
}
