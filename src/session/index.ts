/**
 * Gantry as a library: `openSession(storagePath)` over a node's index, with Patient, Study, Series and
 * Instance objects, lazy attributes and frames, and the node's de-identification. The package's entry
 * point (package.json "exports"); see "Library API (openSession)" in the README.
 */
export { openSession, Session, type IndexCounts, type SessionOptions } from './session.js';
export { Instance, OriginalChangedError, Patient, Series, Study } from './objects.js';
export type { InstanceAttributes, InstanceFilter, PatientAttributes, SeriesAttributes, StudyAttributes } from './queries.js';
export { OriginalUnreadableError, type AttributeKey } from './header.js';
export type { DeidentifyOptions } from './deidentifier.js';
export type { DeidFileResult } from '../deid/deidentify-file.js';
export type { AuditEntry, Finding } from '../deid/engine.js';
export type { FrameSamples } from '../pixels/frames.js';
export type { PixelGeometry } from '../pixels/native.js';
export type { InstanceState } from '../index/instance-index.js';
export type { ConfigInput, GantryConfig } from '../config/schema.js';
export { ConfigError } from '../config/load.js';
export type { ExportRequest, ExportSelection, ExportSummary } from '../toolkit/export.js';
export { DEFAULT_LAYOUT, LAYOUT_KEYWORDS } from '../toolkit/layout.js';
