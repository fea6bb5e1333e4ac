/** De-identification settings from the validated config, as the engine and its workers take them. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ConfigError, type LoadedConfig } from '../config/load.js';
import type { GantryConfig } from '../config/schema.js';
import { compileProfiles, type BaseSettings } from './decide.js';
import type { ProfileOption } from './profile-types.js';
import { RuleError, type ProfileConfig, type RuleConfig } from './rules.js';
import type { SafePrivateElement } from './safe-private.js';
import { SAFE_PRIVATE_STARTER } from './safe-private-starter.js';
import { loadZonesFile } from '../pixels/zones-file.js';
import { ZonesError, type ZoneRule } from '../pixels/zones.js';

/** The named profiles, then the default one (deid.options and deid.rules) last. */
export function profilesFromConfig(config: GantryConfig): ProfileConfig[] {
  // Clean Pixel Data is not a column of Table E.1-1: it chooses pixel redaction, not attribute actions.
  const options = (list: readonly string[]) => list.filter((option) => option !== 'cleanPixelData') as ProfileOption[];
  const cleanPixelData = (list: readonly string[]) => list.includes('cleanPixelData');
  return [
    ...config.deid.profiles.map((profile, index) => ({
      name: profile.name,
      key: `deid.profiles.${index}`,
      when: profile.when,
      options: options(profile.options),
      cleanPixelData: cleanPixelData(profile.options),
      rules: profile.rules as RuleConfig[],
    })),
    { name: 'default', key: 'deid', options: options(config.deid.options), cleanPixelData: cleanPixelData(config.deid.options), rules: config.deid.rules as RuleConfig[] },
  ];
}

/**
 * The profiles and shared settings of a config, checked: a rule that names an attribute the
 * dictionary does not know, a zones file or a certificate that cannot be read is a ConfigError (exit 2
 * from a command, start-up or a reload refused), with the key named. The node, `gantry config check`
 * and `gantry deid` all check here.
 */
export function checkedDeidSettings(loaded: LoadedConfig): { profiles: ProfileConfig[]; base: BaseSettings } {
  // Every part is checked, also when another is wrong: an operator mending a file sees every problem
  // of its rules, profiles, zones and certificate in one run.
  const problems: string[] = [];
  const attempt = <T>(make: () => T): T | undefined => {
    try {
      return make();
    } catch (error) {
      problems.push(...(error instanceof RuleError || error instanceof ZonesError ? error.problems : [(error as Error).message]));
      return undefined;
    }
  };
  const profiles = profilesFromConfig(loaded.config);
  attempt(() => compileProfiles(profiles));
  const pixelZones = attempt(() => pixelZonesFromConfig(loaded.config));
  const encryptFor = attempt(() => certificateFromConfig(loaded.config));
  if (problems.length > 0) throw new ConfigError(loaded.source, problems);
  return { profiles, base: baseSettingsWith(loaded.config, pixelZones ?? [], encryptFor) };
}

/** What every profile shares (reads deid.pixelZones and the recipient certificate). */
export function baseSettingsFromConfig(config: GantryConfig): BaseSettings {
  return baseSettingsWith(config, pixelZonesFromConfig(config), certificateFromConfig(config));
}

function baseSettingsWith(config: GantryConfig, pixelZones: ZoneRule[], encryptFor: string | undefined): BaseSettings {
  return {
    dateShift: { minDays: config.deid.dateShift.minDays, maxDays: config.deid.dateShift.maxDays },
    maxAgeYears: config.deid.maxAgeYears,
    safePrivate: safePrivateFromConfig(config),
    pixelZones,
    ...(encryptFor !== undefined ? { encryptFor } : {}),
  };
}

function pixelZonesFromConfig(config: GantryConfig): ZoneRule[] {
  return config.deid.pixelZones ? loadZonesFile(config.deid.pixelZones) : [];
}

function certificateFromConfig(config: GantryConfig): string | undefined {
  const certificate = config.deid.encryption?.recipientCertificate;
  return certificate ? readCertificate(certificate) : undefined;
}

/** The smallest RSA key the recipient certificate may hold. */
const MIN_RSA_BITS = 2048;

/** The recipient certificate, checked once: a wrong file stops start-up, not every instance. */
function readCertificate(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
    const certificate = new X509Certificate(pem);
    if (certificate.publicKey.asymmetricKeyType !== 'rsa') throw new Error('its key is not RSA');
    // A 512-bit key cannot even wrap the 32-byte content key with OAEP: every instance failed while
    // config check said valid (found in the reversible pseudonymisation review). NIST SP 800-57: 2048.
    const bits = certificate.publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) throw new Error(`its RSA key has ${bits} bits, fewer than ${MIN_RSA_BITS}`);
  } catch (error) {
    throw new Error(`deid.encryption.recipientCertificate: ${path} is not a readable PEM X.509 certificate with an RSA key (${(error as Error).message})`);
  }
  // The recipient's private key is theirs, never the gateway's (PS3.15 E.1.2): a file holding it beside
  // the certificate gave whoever reads the node's config the one key that re-identifies everything, and
  // it went to every de-identification thread (found in the secrets review).
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(pem)) {
    throw new Error(`deid.encryption.recipientCertificate: ${path} holds a private key beside the certificate: give Gantry the certificate alone, and keep the private key with whoever may re-identify`);
  }
  return pem;
}

/** Warn this long before the recipient certificate expires. */
const EXPIRY_WARNING_MS = 30 * 86_400_000;

/**
 * What to say of the recipient certificate's dates, as warnings: an expired one names a key its holder
 * may have retired, and the originals encrypted for it could be lost to everyone (accepted without a
 * word; found in the secrets review). Never a refusal: its key still encrypts, and a node that stopped
 * at the restart after the date would leave the modalities without a destination.
 */
export function recipientCertificateWarnings(config: GantryConfig, now = Date.now()): string[] {
  const path = config.deid.encryption?.recipientCertificate;
  if (path === undefined) return [];
  let validTo: number;
  try {
    validTo = Date.parse(new X509Certificate(readFileSync(path)).validTo);
  } catch {
    return []; // Said by readCertificate, which refuses it.
  }
  if (validTo < now) return [`deid.encryption.recipientCertificate: ${path} expired on ${new Date(validTo).toISOString()}: ask whoever may re-identify whether its key is still theirs, and for a new certificate`];
  if (validTo < now + EXPIRY_WARNING_MS) return [`deid.encryption.recipientCertificate: ${path} expires on ${new Date(validTo).toISOString()}: ask for a new certificate`];
  return [];
}

/** deid.safePrivate entries as the engine takes them, after the starter list of PS3.15 Table
 * E.3.10-1 unless deid.safePrivateStarter is false. */
export function safePrivateFromConfig(config: GantryConfig): SafePrivateElement[] {
  const entries = [...(config.deid.safePrivateStarter ? SAFE_PRIVATE_STARTER : []), ...config.deid.safePrivate];
  return entries.map((entry) => ({
    creator: entry.creator,
    group: Number.parseInt(entry.tag.slice(0, 4), 16),
    element: Number.parseInt(entry.tag.slice(7, 9), 16),
    ...('vr' in entry && typeof entry.vr === 'string' ? { vr: entry.vr } : {}),
  }));
}
