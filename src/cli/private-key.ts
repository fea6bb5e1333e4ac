/**
 * The recipient's private key for `gantry reidentify`: the one key that re-identifies everything, so
 * it may be kept encrypted (PKCS#8 or traditional PEM with a passphrase), its passphrase given in an
 * environment variable the operator names rather than on the command line, where `ps` shows it. Only
 * an unencrypted key file could be read before (found in the reversible pseudonymisation review).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

export function readPrivateKey(path: string, passphraseEnv: string | undefined, env: NodeJS.ProcessEnv = process.env): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`--key ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  // Readable by other accounts, the key that re-identifies everything was used without a word, where
  // the generated deid secret is made owner-only (found in the secrets review). Refused, as ssh refuses.
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0 && !/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem)) {
    throw new Error(`--key ${path} is readable by other accounts (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 it (or encrypt it with a passphrase)`);
  }
  const passphrase = passphraseEnv === undefined ? undefined : env[passphraseEnv];
  if (passphraseEnv !== undefined && passphrase === undefined) throw new Error(`--passphrase-env ${passphraseEnv}: no such environment variable is set`);
  const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem);
  if (encrypted && passphrase === undefined) {
    throw new Error(`--key ${path} is encrypted: name the environment variable that holds its passphrase with --passphrase-env`);
  }
  try {
    return createPrivateKey(passphrase === undefined ? pem : { key: pem, passphrase });
  } catch (error) {
    const why = encrypted ? 'a wrong passphrase, or not a private key' : 'not a PEM private key';
    throw new Error(`--key ${path} cannot be used (${why}: ${(error as Error).message})`);
  }
}
