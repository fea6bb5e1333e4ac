/**
 * De-identification as the node does it (src/pipeline/deidentify.ts and src/deid/worker.ts): the
 * profiles and rules of the config, its pixel zones, pseudonyms keyed by deid.secret, the calling AE
 * title the instance was received from, an operator's `--pass` release, and, under retainUIDs, the
 * renames of redacted instances of the same study. Built on first use, so that a session that only
 * reads the index needs no secret.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { GENERATED_SECRET_FILE } from '../config/secret.js';
import { compileProfiles, type BaseSettings } from '../deid/decide.js';
import { planDeidentification, type DeidFileResult } from '../deid/deidentify-file.js';
import type { OriginalOrigin } from '../deid/original-check.js';
import { Pseudonymizer } from '../deid/pseudonyms.js';
import type { ProfileConfig } from '../deid/rules.js';
import { residualRiskReason, withPassRule } from '../deid/release-policy.js';
import { checkedDeidSettings } from '../deid/settings.js';
import type { Db } from '../db/database.js';
import { refuseAnotherSecret } from '../index/secret-record.js';
import { loadCodecs } from '../pixels/codecs.js';

export interface DeidentifyOptions {
  /** Choose profiles and rules as if the instance came from this AE title (default: the calling AE
   * title it was received from, as the node does). */
  callingAeTitle?: string;
  /** Sync the output to disk before resolving (default false: a copy can always be made again). */
  sync?: boolean;
}

/** What the node knows about an instance besides its file. */
export interface InstanceFacts {
  callingAeTitle: string;
  /** An operator released it with `gantry quarantine release --pass`. */
  pass: boolean;
  /** An operator released it with `gantry quarantine release --ignore-findings`. */
  ignoreFindings: boolean;
  /** Under retainUIDs: other instances of its study renamed by redaction, original → new UID. */
  renamedUids: ReadonlyMap<string, string>;
  /** Its SOP Instance UID in the index and where it came from: a file naming another is refused. */
  expected: { sopInstanceUid: string; origin: OriginalOrigin };
}

export class Deidentifier {
  private readonly profiles: ProfileConfig[];
  private readonly base: BaseSettings;
  private readonly pseudonyms: Pseudonymizer;
  private readonly quarantineOnFindings: boolean;

  constructor(loaded: LoadedConfig, storagePath: string, db: Db) {
    const secret = deidSecret(loaded, storagePath);
    // As gantry export and the session's export: another secret than the node's gave one patient two
    // unlinked pseudonyms, beside the node's copies (found in the library review).
    refuseAnotherSecret(db, secret, loaded.source, 'these copies');
    this.pseudonyms = new Pseudonymizer(secret);
    this.quarantineOnFindings = loaded.config.deid.quarantineOnFindings;
    // Rules, profiles, deid.pixelZones and the recipient certificate checked as the node checks them:
    // what is wrong is said here, once, with every problem, not at each instance.
    const { profiles, base } = checkedDeidSettings(loaded);
    this.profiles = profiles;
    this.base = base;
  }

  async deidentify(input: string, output: string, facts: InstanceFacts, options: DeidentifyOptions = {}): Promise<DeidFileResult> {
    // JPEG-LS and JPEG 2000 frames are redacted through WebAssembly codecs, loaded once per thread. A
    // codec that cannot load holds back only the instances that need it, with the reason, as in the node.
    await loadCodecs().catch(() => undefined);
    mkdirSync(dirname(output), { recursive: true });
    const profiles = facts.pass ? withPassRule(this.profiles) : this.profiles;
    const plan = planDeidentification(input, {
      settings: {
        profiles: compileProfiles(profiles),
        base: facts.renamedUids.size > 0 ? { ...this.base, renamedUids: facts.renamedUids } : this.base,
        callingAeTitle: options.callingAeTitle ?? facts.callingAeTitle,
      },
      pseudonyms: this.pseudonyms,
      expected: facts.expected,
    });
    try {
      if (plan.result.kind === 'quarantined') return plan.result;
      // The node's rule (deid.quarantineOnFindings): residual risk holds the instance back, and
      // nothing is written, as the node, gantry deid and gantry export hold it (found in the library
      // review: the copy was written and came back 'deidentified').
      const risk = residualRiskReason(plan.result.findings, this.quarantineOnFindings, facts.ignoreFindings);
      if (risk !== undefined) return { kind: 'quarantined', reason: risk };
      return plan.write(output, options.sync !== undefined ? { sync: options.sync } : {});
    } finally {
      plan.close();
    }
  }
}

/**
 * deid.secret of the config. The embedded config names none: a node started on it generated one under
 * the storage folder (src/config/secret.ts), and that one is used, so that the session's pseudonyms are
 * the node's. A session never generates a secret: a new key would silently unlink every pseudonym.
 */
export function deidSecret(loaded: LoadedConfig, storagePath: string): string {
  const configured = loaded.config.deid.secret;
  if (configured !== undefined) return configured;
  const generated = join(storagePath, GENERATED_SECRET_FILE);
  if (loaded.embedded && existsSync(generated)) return readFileSync(generated, 'utf8').trim();
  throw new Error(
    `deid.secret is not set (config ${loaded.source}): de-identification needs it, the key of every pseudonym; ` +
      'pass a config that names it, e.g. openSession(path, { config: { deid: { secret: process.env.GANTRY_DEID_SECRET } } })',
  );
}
