// The webhook's certificates with node-forge: a CA, a serving certificate signed by it with the Service DNS
// names as SANs, and rotation before expiry. Rotation keeps the old CA in the bundle (ca.crt) through an
// overlap window, as Kyverno does: a new CA is first only *added* to the bundle (so the API server's
// caBundle trusts both), the serving certificate switches to it once the overlap has passed, and the old CA
// leaves the bundle when it expires.
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import forge from 'node-forge';

const DAY_MS = 86_400_000;

export const CERT_FILES = {
  caBundle: 'ca.crt',
  caKey: 'ca.key',
  /** Key of the CA before the newest, needed to re-sign during the overlap window. */
  previousCaKey: 'ca-previous.key',
  cert: 'tls.crt',
  key: 'tls.key',
} as const;

export interface RotationSettings {
  caValidityDays: number;
  caRenewBeforeDays: number;
  certValidityDays: number;
  certRenewBeforeDays: number;
  /** How long a new CA sits in the bundle before the serving certificate switches to it. */
  overlapMs: number;
}

export const DEFAULT_ROTATION: RotationSettings = {
  caValidityDays: 365,
  caRenewBeforeDays: 60,
  certValidityDays: 90,
  certRenewBeforeDays: 30,
  overlapMs: DAY_MS,
};

export interface PemPair {
  certPem: string;
  keyPem: string;
}

export interface CertDirContents {
  /** PEM blocks of ca.crt, newest CA first. */
  caBundle: string[];
  caKeyPem?: string;
  previousCaKeyPem?: string;
  certPem?: string;
  keyPem?: string;
}

function serialNumber(): string {
  // positive 128-bit serial (leading nibble < 8 keeps the DER integer positive)
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

export function createCa(commonName: string, now: Date, validityDays: number): PemPair {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(now.getTime() - 60_000); // tolerate small clock skew
  cert.validity.notAfter = new Date(now.getTime() + validityDays * DAY_MS);
  const subject = [
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'pahlevan' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

export function issueServingCert(
  ca: PemPair,
  dnsNames: readonly string[],
  now: Date,
  validityDays: number,
): PemPair {
  if (dnsNames.length === 0) throw new Error('at least one DNS name is needed for the serving certificate');
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem);
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  // never outlive the CA that signs it
  cert.validity.notAfter = new Date(
    Math.min(now.getTime() + validityDays * DAY_MS, caCert.validity.notAfter.getTime()),
  );
  cert.setSubject([{ name: 'commonName', value: dnsNames[0]! }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: dnsNames.map((name) =>
        /^[0-9.]+$/.test(name) || name.includes(':') ? { type: 7, ip: name } : { type: 2, value: name },
      ),
    },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

export function splitPemBundle(text: string): string[] {
  return (
    text
      .match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)
      ?.map((b) => b.trimEnd() + '\n') ?? []
  );
}

/** SAN DNS names and IPs of a certificate, in order. */
export function subjectAltNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter(Boolean)
    .map((entry) => entry.replace(/^(DNS|IP Address):/, ''));
}

export interface RotationPlan {
  newCa: boolean;
  reissueCert: boolean;
  /** Indexes into the current bundle to keep, newest first (a new CA goes in front). */
  keepCas: number[];
  reasons: string[];
}

/** Pure: what to do with the certificate directory at `now`. */
export function planRotation(
  contents: CertDirContents,
  dnsNames: readonly string[],
  now: Date,
  settings: RotationSettings = DEFAULT_ROTATION,
): RotationPlan {
  const reasons: string[] = [];
  const nowMs = now.getTime();
  const cas = contents.caBundle.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      // Never replace a CA we cannot read: the API server may trust it. Make the operator look.
      throw new Error(
        `ca.crt certificate #${i + 1} cannot be parsed (${(err as Error).message}); fix or remove ca.crt`,
      );
    }
  });
  const keepCas = cas.map((_, i) => i).filter((i) => Date.parse(cas[i]!.validTo) > nowMs);
  if (keepCas.length < cas.length)
    reasons.push(`dropping ${cas.length - keepCas.length} expired CA(s) from the bundle`);

  let newCa = false;
  const newest = cas[0];
  if (!newest || !contents.caKeyPem) {
    newCa = true;
    reasons.push('no CA yet');
  } else if (Date.parse(newest.validTo) - nowMs < settings.caRenewBeforeDays * DAY_MS) {
    newCa = true;
    reasons.push(`CA expires ${newest.validTo}: adding a new CA to the bundle`);
  }

  let reissueCert = false;
  if (newCa && !newest) reissueCert = true;
  else if (!contents.certPem || !contents.keyPem) {
    reissueCert = true;
    reasons.push('no serving certificate yet');
  } else {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(contents.certPem);
    } catch {
      return {
        newCa,
        reissueCert: true,
        keepCas,
        reasons: [...reasons, 'tls.crt is not a valid certificate'],
      };
    }
    let keyMatches = false;
    try {
      keyMatches = cert.checkPrivateKey(createPrivateKey(contents.keyPem));
    } catch {
      keyMatches = false;
    }
    const signer = cas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
    const sans = subjectAltNames(cert);
    if (Date.parse(cert.validTo) - nowMs < settings.certRenewBeforeDays * DAY_MS) {
      reissueCert = true;
      reasons.push(`serving certificate expires ${cert.validTo}`);
    } else if (!signer || Date.parse(signer.validTo) <= nowMs) {
      reissueCert = true;
      reasons.push('serving certificate is not signed by a valid CA in the bundle');
    } else if (dnsNames.some((n) => !sans.includes(n))) {
      reissueCert = true;
      reasons.push(`serving certificate lacks SANs ${dnsNames.filter((n) => !sans.includes(n)).join(', ')}`);
    } else if (!keyMatches) {
      reissueCert = true;
      reasons.push('tls.key does not match tls.crt');
    } else if (signer !== newest && !newCa && nowMs - Date.parse(newest!.validFrom) >= settings.overlapMs) {
      reissueCert = true;
      reasons.push('overlap window over: switching the serving certificate to the newest CA');
    }
  }
  return { newCa, reissueCert, keepCas, reasons };
}

export function readCertDir(dir: string): CertDirContents {
  const read = (name: string) =>
    existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : undefined;
  return contentsFromFiles(Object.fromEntries(Object.values(CERT_FILES).map((name) => [name, read(name)])));
}

/** Write via a temporary file and rename, so a watcher never reads half a file. Key first, then cert. */
export function writeFileAtomic(path: string, content: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, path);
}

export interface EnsureResult {
  plan: RotationPlan;
  changed: boolean;
}

/** The certificate files by name (as in the directory, or as the data of a Kubernetes Secret). */
export function contentsToFiles(contents: CertDirContents): Record<string, string> {
  const files: Record<string, string> = {};
  if (contents.caBundle.length > 0) files[CERT_FILES.caBundle] = contents.caBundle.join('');
  if (contents.caKeyPem) files[CERT_FILES.caKey] = contents.caKeyPem;
  if (contents.previousCaKeyPem) files[CERT_FILES.previousCaKey] = contents.previousCaKeyPem;
  if (contents.certPem) files[CERT_FILES.cert] = contents.certPem;
  if (contents.keyPem) files[CERT_FILES.key] = contents.keyPem;
  return files;
}

export function contentsFromFiles(files: Readonly<Record<string, string | undefined>>): CertDirContents {
  const bundle = files[CERT_FILES.caBundle];
  return {
    caBundle: bundle ? splitPemBundle(bundle) : [],
    caKeyPem: files[CERT_FILES.caKey],
    previousCaKeyPem: files[CERT_FILES.previousCaKey],
    certPem: files[CERT_FILES.cert],
    keyPem: files[CERT_FILES.key],
  };
}

export interface RotationResult {
  plan: RotationPlan;
  changed: boolean;
  contents: CertDirContents;
}

/**
 * Creates or rotates certificates in memory, as planRotation says: usable on a directory (ensureCerts) or on
 * the data of a Secret (a controller rotating the webhook Secret and patching caBundle from `caBundle`).
 */
export function rotateCerts(
  contents: CertDirContents,
  dnsNames: readonly string[],
  now: Date = new Date(),
  settings: RotationSettings = DEFAULT_ROTATION,
): RotationResult {
  const plan = planRotation(contents, dnsNames, now, settings);
  let bundle = plan.keepCas.map((i) => contents.caBundle[i]!);
  let caKeyPem = contents.caKeyPem;
  let previousKeyPem = contents.previousCaKeyPem;
  let { certPem, keyPem } = contents;
  const firstCa = bundle.length === 0 || !caKeyPem;
  if (plan.newCa) {
    const ca = createCa(`pahlevan-webhook-ca-${now.toISOString()}`, now, settings.caValidityDays);
    if (firstCa) bundle = [ca.certPem];
    else {
      bundle = [ca.certPem, ...bundle];
      previousKeyPem = caKeyPem;
    }
    caKeyPem = ca.keyPem;
  }
  if (bundle.length < 2) previousKeyPem = undefined; // its CA left the bundle
  if (plan.reissueCert) {
    const newest = new X509Certificate(bundle[0]!);
    const inOverlap = now.getTime() - Date.parse(newest.validFrom) < settings.overlapMs;
    // Within the overlap window the API server may not trust the new CA yet: sign with the previous one.
    const signer =
      inOverlap && bundle.length > 1 && previousKeyPem
        ? { certPem: bundle[1]!, keyPem: previousKeyPem }
        : { certPem: bundle[0]!, keyPem: caKeyPem! };
    ({ certPem, keyPem } = issueServingCert(signer, dnsNames, now, settings.certValidityDays));
  }
  const changed = plan.newCa || plan.reissueCert || plan.keepCas.length !== contents.caBundle.length;
  return {
    plan,
    changed,
    contents: { caBundle: bundle, caKeyPem, previousCaKeyPem: previousKeyPem, certPem, keyPem },
  };
}

/** Creates or rotates the files in `dir` (see rotateCerts). Idempotent. */
export function ensureCerts(
  dir: string,
  dnsNames: readonly string[],
  now: Date = new Date(),
  settings: RotationSettings = DEFAULT_ROTATION,
): EnsureResult {
  mkdirSync(dir, { recursive: true });
  const before = readCertDir(dir);
  const { plan, changed, contents } = rotateCerts(before, dnsNames, now, settings);
  if (changed) {
    const files = contentsToFiles(contents);
    const old = contentsToFiles(before);
    // key before certificate, so a watcher that sees the new certificate finds its key
    for (const name of [
      CERT_FILES.key,
      CERT_FILES.cert,
      CERT_FILES.caKey,
      CERT_FILES.previousCaKey,
      CERT_FILES.caBundle,
    ]) {
      const content = files[name];
      if (content !== undefined && content !== old[name])
        writeFileAtomic(join(dir, name), content, name.endsWith('.key') ? 0o600 : 0o644);
    }
    if (files[CERT_FILES.previousCaKey] === undefined && old[CERT_FILES.previousCaKey] !== undefined)
      rmSync(join(dir, CERT_FILES.previousCaKey), { force: true });
  }
  return { plan, changed };
}
