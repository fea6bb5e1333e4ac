/**
 * An audit (entries or findings) encoded for the index: its JSON and the SHA-256 of that JSON. The
 * index stores each distinct text once under its digest (src/index/deid-audit.ts). The entries' text
 * is made where the audit is, in the de-identification workers, so that the main thread neither
 * encodes nor compares texts that run to tens of kilobytes (a real CT's audit has hundreds of
 * entries), only digests; findings, short and usually none, are encoded where the policy reads them.
 * The digest is also written out in migration 011, which must not change with this file.
 */
import { createHash } from 'node:crypto';

export interface AuditText {
  json: string;
  /** SHA-256 of `json`, base64. */
  digest: string;
}

export function auditText(value: readonly unknown[]): AuditText {
  const json = JSON.stringify(value);
  return { json, digest: digestOf(json) };
}

function digestOf(json: string): string {
  return createHash('sha256').update(json).digest('base64');
}

/** The text of an empty list, the usual findings: made once. */
export const EMPTY_AUDIT_TEXT: Readonly<AuditText> = Object.freeze(auditText([]));

/** The text of findings on the main thread: the empty list without hashing again. */
export function findingsText(findings: readonly unknown[]): AuditText {
  return findings.length === 0 ? EMPTY_AUDIT_TEXT : auditText(findings);
}
