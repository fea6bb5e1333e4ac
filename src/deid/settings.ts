/** De-identification settings from the validated config, as the engine and its workers take them. */
import type { GantryConfig } from '../config/schema.js';
import type { DeidSettings } from './engine.js';
import type { ProfileOption } from './profile-types.js';
import type { SafePrivateElement } from './safe-private.js';

export function settingsFromConfig(config: GantryConfig): DeidSettings {
  return {
    options: new Set(config.deid.options.filter((option) => option !== 'cleanPixelData')) as Set<ProfileOption>,
    dateShift: { minDays: config.deid.dateShift.minDays, maxDays: config.deid.dateShift.maxDays },
    maxAgeYears: config.deid.maxAgeYears,
    safePrivate: safePrivateFromConfig(config),
  };
}

/** deid.safePrivate entries as the engine takes them. */
export function safePrivateFromConfig(config: GantryConfig): SafePrivateElement[] {
  return config.deid.safePrivate.map((entry) => ({
    creator: entry.creator,
    group: Number.parseInt(entry.tag.slice(0, 4), 16),
    element: Number.parseInt(entry.tag.slice(7, 9), 16),
  }));
}

