/**
 * Learns the certificate an HTTPS server shows, without trusting it yet
 * (trust on first use): a TLS handshake that accepts any certificate,
 * then the peer's DER bytes as PEM with their SHA-256 fingerprint.
 *
 * @module
 */
import { connect } from "node:tls";
import { after } from "../proxy/timers.ts";

/** A server certificate as learnt on contact. */
export interface PeerCertificate {
  pem: string;
  /** SHA-256 of the DER bytes, uppercase hex pairs joined by `:`. */
  sha256: string;
  /** The names and addresses it is valid for (its subjectAltName). */
  names: string[];
}

/** SHA-256 of DER bytes as `AB:CD:…` (what `openssl x509 -fingerprint` prints). */
export async function fingerprint(der: Uint8Array): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new Uint8Array(der)),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0"))
    .join(":").toUpperCase();
}

/** DER bytes → PEM `CERTIFICATE`. */
export function derToPem(der: Uint8Array): string {
  let binary = "";
  for (const b of der) binary += String.fromCharCode(b);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${
    lines.join("\n")
  }\n-----END CERTIFICATE-----\n`;
}

/** PEM `CERTIFICATE` → DER bytes (the first certificate). */
export function pemToDer(pem: string): Uint8Array {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/
    .exec(pem);
  if (!m) throw new Error("no PEM certificate found");
  return Uint8Array.from(
    atob(m[1].replace(/\s+/g, "")),
    (c) => c.charCodeAt(0),
  );
}

/**
 * Connects to `host:port`, completes a TLS handshake accepting any
 * certificate, and answers the server's certificate.
 */
export function fetchPeerCertificate(
  host: string,
  port: number,
  options: { timeoutMs?: number } = {},
): Promise<PeerCertificate> {
  const isIp = /^[\d.]+$/.test(host) || host.includes(":");
  return new Promise((resolve, reject) => {
    const socket = connect({
      host,
      port,
      servername: isIp ? undefined : host,
      rejectUnauthorized: false,
    });
    const timer = after(options.timeoutMs ?? 10_000, () => {
      socket.destroy();
      reject(
        new Error(
          `no TLS answer from ${host}:${port} within ${
            (options.timeoutMs ?? 10_000) / 1000
          }s`,
        ),
      );
    });
    socket.once("secureConnect", () => {
      timer.cancel();
      const cert = socket.getPeerCertificate(false);
      socket.end();
      if (!cert || !cert.raw) {
        reject(new Error(`${host}:${port} showed no certificate`));
        return;
      }
      const der = new Uint8Array(cert.raw);
      // "DNS:localhost, IP Address:127.0.0.1" → ["localhost", "127.0.0.1"]
      const names = (cert.subjectaltname ?? "").split(", ")
        .map((n) => n.replace(/^[^:]*:/, "")).filter((n) => n !== "");
      fingerprint(der).then(
        (sha256) => resolve({ pem: derToPem(der), sha256, names }),
        reject,
      );
    });
    socket.once("error", (e: Error & { code?: string }) => {
      timer.cancel();
      socket.destroy();
      reject(
        new Error(
          `cannot reach ${host}:${port}: ${e.code ?? e.message}` +
            (e.code === "ECONNREFUSED" ? " (is pmproxy running there?)" : ""),
        ),
      );
    });
  });
}
