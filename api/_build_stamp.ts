/**
 * The commit this build was made from. `scripts/build_stamp.ts` writes it
 * here while `deno task bundle` or `deno task compile` runs, and puts this
 * file back as it was afterwards; in the source it is undefined, and
 * `build_info.ts` asks git instead. Private to api/.
 *
 * @module
 */

/** The commit of a bundled or compiled build; undefined in the source. */
export const BUILD_COMMIT: string | undefined = undefined;
