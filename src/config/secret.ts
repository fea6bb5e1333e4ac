/**
 * The de-identification secret. An operator's config must name it (deid.secret, usually from the
 * environment); only the embedded default config, for `npm start` out of the box, generates one on
 * first start and keeps it under storage.path, readable by its owner only.
 *
 * Changing the secret changes every pseudonym, UID and date offset from then on: the same patient
 * gets new pseudonyms and can no longer be linked to what was sent before.
 */
import { createHmac, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, linkSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { makeDirectoryDurablySync, syncDirectorySync } from '../store/sync.js';
import type { Logger } from '../observability/logger.js';
import { ConfigError, type LoadedConfig } from './load.js';

export const GENERATED_SECRET_FILE = 'deid-secret';

/** A digest that tells secrets apart (HMAC keyed by the secret, 64 bits), fast and unsalted: in the
 * index only (index/secret-record.ts), which holds PHI already; an export folder's marker holds a
 * sealedSecret, and the digest only as an earlier Gantry wrote it there (read, never written). */
export function secretDigest(secret: string): string {
  return createHmac('sha256', secret).update('gantry export marker').digest('hex').slice(0, 16);
}

/**
 * A check of the secret for a file that leaves the index (an export folder's marker), salted and slow
 * (scrypt, about 30 ms): secretDigest there, fast and unsalted, let anyone who received an export test
 * guesses at deid.secret offline, 240,000 a second on one core, and a weak secret fell (found in the
 * secrets review); knowing it gives every patient's pseudonyms and date shift from their IDs.
 */
export function sealedSecret(secret: string, salt = randomBytes(16).toString('hex')): { salt: string; check: string } {
  return { salt, check: scryptSync(secret, salt, 16, { N: 1 << 14, r: 8, p: 1 }).toString('hex') };
}

/** Whether `secret` is the one a sealedSecret was made of. */
export function opensSeal(secret: string, seal: { salt: string; check: string }): boolean {
  const check = Buffer.from(sealedSecret(secret, seal.salt).check, 'hex');
  const recorded = Buffer.from(seal.check, 'hex');
  return check.length === recorded.length && timingSafeEqual(check, recorded);
}

/**
 * What is weak about a secret, as warnings (never refusals: a deployment's secret, once in use, cannot
 * change without changing every pseudonym, and an upgrade must not stop it). Found in the secrets
 * review: Password12345678, changeme-changeme and 1234567890123456 passed without a word, and a
 * secret read from a file kept its newline, so that nodes "sharing" it gave other pseudonyms.
 */
export function secretWarnings(secret: string): string[] {
  const warnings: string[] = [];
  if (secret !== secret.trim()) {
    warnings.push('deid.secret begins or ends with whitespace (a newline of the file it came from?): it is part of the key, and nodes that share the secret must share it exactly');
  }
  const core = secret.trim();
  const bits = Math.round(estimatedBits(core));
  const why = /^(.{1,}?)[-_ .]?\1+$/.test(core)
    ? 'a repeated word'
    : COMMON_WORD.test(core) && core.replace(COMMON_WORD, '').length < 12
      ? 'a common word'
      : /0123|1234|2345|3456|4567|5678|6789|abcd|bcde|qwer|asdf/i.test(core)
        ? 'a run of keys or digits'
        : new Set(core).size < 6
          ? `${new Set(core).size} distinct characters`
          : bits < 64
            ? `about ${bits} bits`
            : undefined;
  if (why !== undefined) {
    warnings.push(`deid.secret looks guessable (${why}): whoever guesses it computes any patient's pseudonyms and date shift from the patient's ID; use 32 random bytes (openssl rand -base64 32) for a new deployment (changing it changes every pseudonym from then on)`);
  }
  return warnings;
}

/** Words a secret is made of by people, not by a generator (a list of the most common): warned of
 * when little else is there ("Password12345678"), not in a passphrase of many words. */
const COMMON_WORD = /password|passwort|secret|changeme|letmein|welcome|admin|gantry|qwerty|dicom|hospital|default|example/i;

/** An upper bound of a secret's randomness: its length times the bits of the classes of characters it
 * uses. A random hex secret of 16 characters is 83 bits by this count, 64 in truth: generous, so that
 * only short secrets of few classes are warned of (the patterns above catch made-up ones). */
function estimatedBits(secret: string): number {
  const classes = [/[a-z]/, /[A-Z]/, /\d/, /[^A-Za-z\d]/];
  const sizes = [26, 26, 10, 33];
  const alphabet = classes.reduce((sum, pattern, index) => sum + (pattern.test(secret) ? (sizes[index] as number) : 0), 0);
  return secret.length * Math.log2(Math.max(alphabet, 2));
}

/** An operator's config names its secret (only the embedded config may go without). */
export function requireOperatorSecret(loaded: LoadedConfig): void {
  if (loaded.config.deid.secret !== undefined || loaded.embedded) return;
  throw new ConfigError(loaded.source, [
    'deid.secret: is required; name it in the config, best from the environment: deid.secret: ${GANTRY_DEID_SECRET} (at least 16 characters)',
  ]);
}

export function resolveDeidSecret(loaded: LoadedConfig, storagePath: string, log: Logger): string {
  requireOperatorSecret(loaded);
  const configured = loaded.config.deid.secret;
  if (configured !== undefined) return configured;
  const file = join(storagePath, GENERATED_SECRET_FILE);
  try {
    const secret = readFileSync(file, 'utf8').trim();
    if (Buffer.byteLength(secret, 'utf8') < 16) {
      throw new ConfigError(loaded.source, [
        `the generated secret in ${file} is shorter than 16 bytes (damaged?): restore it from its backup; deleting it makes a new one, which changes every pseudonym from then on`,
      ]);
    }
    if ((statSync(file).mode & 0o077) !== 0) {
      chmodSync(file, 0o600);
      log.warn({ file }, 'the generated de-identification secret was readable by others; made it owner-only');
    }
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const secret = randomBytes(32).toString('base64url');
  if (!placeDurably(file, `${secret}\n`)) return resolveDeidSecret(loaded, storagePath, log); // another process made it first
  log.warn(
    { file },
    'generated a de-identification secret for the embedded config; back it up (losing or changing it changes every pseudonym), and name your own in deid.secret for production',
  );
  return secret;
}

/**
 * Writes a new file whole and synced before its name appears, and syncs the name: pseudonyms are made
 * with the secret at once, and a power cut that left it empty (found in the durability review) left a
 * node that would not start, or a new secret and other pseudonyms for the same patients. False when
 * the file exists already (link(2) never replaces a name).
 */
function placeDurably(file: string, content: string): boolean {
  const folder = dirname(file);
  makeDirectoryDurablySync(folder);
  const temporary = `${file}.${process.pid}.new`;
  const fd = openSync(temporary, 'w', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(temporary);
  }
  syncDirectorySync(folder);
  return true;
}
