// Watches tls.crt/tls.key and hands a freshly validated pair to the server (which calls setSecureContext:
// established connections keep their session, new handshakes get the new certificate). A half-written or
// mismatched pair is ignored until it becomes consistent, so the served certificate is always a valid one.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import { CERT_FILES } from './certs.js';

export interface ServingCert {
  certPem: string;
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
  serialNumber: string;
  fingerprint256: string;
  subjectAltNames: string;
}

/** Reads and checks the pair in `dir`; throws with a message naming the problem. */
export function loadServingCert(dir: string): ServingCert {
  const certPath = join(dir, CERT_FILES.cert);
  const keyPath = join(dir, CERT_FILES.key);
  let certPem: string;
  let keyPem: string;
  try {
    certPem = readFileSync(certPath, 'utf8');
    keyPem = readFileSync(keyPath, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the serving certificate in ${dir}: ${(err as Error).message}`);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw new Error(`${certPath} is not a PEM certificate: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new Error(`${keyPath} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!matches) throw new Error(`${keyPath} does not belong to ${certPath}`);
  return {
    certPem,
    keyPem,
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    serialNumber: cert.serialNumber,
    fingerprint256: cert.fingerprint256,
    subjectAltNames: cert.subjectAltName ?? '',
  };
}

export function isCertValidAt(
  cert: Pick<ServingCert, 'notBefore' | 'notAfter'>,
  now: Date = new Date(),
): boolean {
  return cert.notBefore.getTime() <= now.getTime() && now.getTime() < cert.notAfter.getTime();
}

export interface CertWatcherOptions {
  pollMs: number;
  onReload: (cert: ServingCert) => void;
  onError: (err: Error) => void;
}

export class CertWatcher {
  private timer: NodeJS.Timeout | undefined;
  private readonly files: string[];
  private readonly listener = () => this.schedule();

  constructor(
    private readonly dir: string,
    public current: ServingCert,
    private readonly options: CertWatcherOptions,
  ) {
    this.files = [join(dir, CERT_FILES.cert), join(dir, CERT_FILES.key)];
  }

  start(): void {
    // stat polling follows Kubernetes' Secret volume symlink swaps, which inotify on the file misses
    for (const file of this.files)
      watchFile(file, { interval: this.options.pollMs, persistent: false }, this.listener);
  }

  stop(): void {
    for (const file of this.files) unwatchFile(file, this.listener);
    if (this.timer) clearTimeout(this.timer);
  }

  /** Reads the files now; returns true when a new certificate was handed over. */
  check(): boolean {
    let next: ServingCert;
    try {
      next = loadServingCert(this.dir);
    } catch (err) {
      this.options.onError(err as Error);
      return false;
    }
    if (next.fingerprint256 === this.current.fingerprint256 && next.keyPem === this.current.keyPem)
      return false;
    if (!isCertValidAt(next)) {
      this.options.onError(
        new Error(`new certificate ${next.serialNumber} is not valid now; keeping the current one`),
      );
      return false;
    }
    this.current = next;
    this.options.onReload(next);
    return true;
  }

  private schedule(): void {
    // cert and key change in two steps: wait a moment so both are there
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.check();
      },
      Math.min(50, this.options.pollMs),
    );
    this.timer.unref();
  }
}
