/**
 * De-identification settings travel to the worker threads once per version, not with every task:
 * the base settings hold the safe private attributes (Table E.3.10-1, about 27 kB serialised), and
 * cloning them for every task cost the main thread — the thread the receive path runs on — a third of
 * a millisecond per instance. They are serialised once into shared memory (a task carries only the
 * reference), and each worker deserialises and compiles a version once.
 */
import { deserialize, serialize } from 'node:v8';
import { compileProfiles, type BaseSettings } from './decide.js';
import type { CompiledProfile, ProfileConfig } from './rules.js';
import { withPassRule } from './release-policy.js';

export interface SharedSettings {
  /** Unique within the process: a worker recognises a version it has compiled. */
  version: number;
  /** v8-serialised { profiles, base }. */
  bytes: SharedArrayBuffer;
}

let lastVersion = 0;

export function shareSettings(profiles: readonly ProfileConfig[], base: BaseSettings): SharedSettings {
  const serialized = serialize({ profiles, base });
  const bytes = new SharedArrayBuffer(serialized.length);
  new Uint8Array(bytes).set(serialized);
  lastVersion += 1;
  return { version: lastVersion, bytes };
}

export interface WorkerSettings {
  profiles: readonly CompiledProfile[];
  /** The profiles with a `pass` rule first (an operator let this instance's pixels through). */
  passProfiles: readonly CompiledProfile[];
  base: BaseSettings;
}

/** The worker's side: the settings of the version last seen, compiled once. */
export class SettingsCache {
  private current: { version: number; settings: WorkerSettings } | undefined;

  get(shared: SharedSettings): WorkerSettings {
    if (this.current?.version !== shared.version) {
      const { profiles, base } = deserialize(new Uint8Array(shared.bytes)) as { profiles: ProfileConfig[]; base: BaseSettings };
      const settings = { profiles: compileProfiles(profiles), passProfiles: compileProfiles(withPassRule(profiles)), base };
      this.current = { version: shared.version, settings };
    }
    return this.current.settings;
  }
}
