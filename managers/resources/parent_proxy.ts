/**
 * `parentProxy`: a resource. When the rule reaches it, the request is
 * dialled through another proxy; it is always true.
 *
 * ```toml
 * [[parentProxy]]
 *   name = "upstream"
 *   proxyURL = "http://user:pass@10.0.0.1:3128"   # or socks5://host:1080
 * ```
 *
 * The last parent proxy reached wins. An outgoing interface (`netIface`)
 * reached before it is kept: the connection to the parent leaves from it.
 *
 * @module
 */
import type { EvalContext, Grant, Manager } from "../types.ts";
import { needString, type Table } from "../config/table_fields.ts";
import type { KindContext } from "../config/kind_context.ts";

/** A `parentProxy` manager. */
export class ParentProxy implements Manager {
  readonly kind = "parentProxy";

  /** `proxyUrl` is a checked `http://` or `socks5://` URL. */
  constructor(readonly name: string, readonly proxyUrl: string) {}

  evaluate(_ctx: EvalContext, grant: Grant): boolean {
    const localAddress = grant.route?.localAddress;
    grant.route = localAddress === undefined
      ? { kind: "parent", proxyUrl: this.proxyUrl }
      : { kind: "parent", proxyUrl: this.proxyUrl, localAddress };
    return true;
  }

  explain(): string {
    return `through the parent proxy ${hidePassword(this.proxyUrl)}`;
  }

  show(): unknown {
    // Never show the parent's password.
    return { name: this.name, proxyURL: hidePassword(this.proxyUrl) };
  }
}

/**
 * The URL with its password as `***`. The userinfo ends at the last `@`
 * (a password may hold one) and the password starts after its first `:`.
 */
function hidePassword(url: string): string {
  const start = url.indexOf("//") + 2;
  const at = url.lastIndexOf("@");
  if (start < 2 || at < start) return url;
  const colon = url.indexOf(":", start);
  if (colon < 0 || colon > at) return url;
  return `${url.slice(0, colon)}:***${url.slice(at)}`;
}

/**
 * Checks a parent proxy URL: `http://` or `socks5://`, a host, a port,
 * optional `user:pass@`, nothing after. Answers an error sentence or
 * undefined when it is good.
 */
export function checkProxyUrl(text: string): string | undefined {
  const form =
    `write it like "http://10.0.0.1:3128", "http://user:pass@proxy.example.org:8080" or "socks5://10.0.0.1:1080"`;
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)\/?$/.exec(text);
  if (!m) return `"${text}" is not a proxy URL; ${form}`;
  const scheme = m[1].toLowerCase();
  if (scheme !== "http" && scheme !== "socks5") {
    return `"${text}": the scheme "${
      m[1]
    }://" is not supported, only http:// and socks5://; ${form}`;
  }
  const authority = m[2];
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  const hp = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(hostPort);
  if (!hp) {
    return `"${text}" needs a host and a port after "${m[1]}://"; ${form}`;
  }
  const port = Number(hp[2]);
  if (port < 1 || port > 65535) {
    return `"${text}": the port ${hp[2]} is not between 1 and 65535`;
  }
  try {
    new URL(text);
  } catch {
    return `"${text}" is not a valid URL; ${form}`;
  }
  return undefined;
}

/** Builds a `parentProxy` from its table; `ctx.fail` throws the error for a key. */
export function parentProxyFromTable(
  table: Table,
  ctx: KindContext,
): ParentProxy {
  const { name, fail } = ctx;
  const url = needString(
    table,
    "proxyURL",
    fail,
    `proxyURL = "http://10.0.0.1:3128"`,
  );
  const bad = checkProxyUrl(url.trim());
  if (bad) fail("proxyURL", `proxyURL = ${bad}`);
  return new ParentProxy(name, url.trim().replace(/\/$/, ""));
}
