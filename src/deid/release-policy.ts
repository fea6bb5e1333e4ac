/**
 * How holds and an operator's releases apply: alike in the node, the export and the library, and on
 * the worker threads (which therefore import this, not the config-reading settings.ts).
 */
import type { ProfileConfig } from './rules.js';

/** An operator's release with --pass (gantry quarantine release): a `pass` rule ahead of every
 * profile's own. The node, the export and the library apply it alike. */
export function withPassRule(profiles: readonly ProfileConfig[]): ProfileConfig[] {
  return profiles.map((profile) => ({ ...profile, rules: [{ action: 'pass' as const }, ...profile.rules] }));
}

/**
 * deid.quarantineOnFindings: why a de-identified output is held back for residual risk, or undefined
 * when it is not (the option off, an operator's release with --ignore-findings, or no risk: an empty
 * PatientID is information, not risk). Finding messages name attributes, never values.
 */
export function residualRiskReason(findings: ReadonlyArray<{ code: string; message: string }>, quarantineOnFindings: boolean, ignoreFindings = false): string | undefined {
  if (!quarantineOnFindings || ignoreFindings) return undefined;
  const risks = findings.filter((finding) => finding.code !== 'empty-patient-id');
  return risks.length === 0 ? undefined : `residual risk: ${risks.map((finding) => finding.message).join('; ')}`.slice(0, 500);
}
