/**
 * Reporting to an observer (metrics) from a path that must not break: an observer that throws is
 * logged and ignored, so a metric can never fail a store, a forward or a de-identification.
 */
import type { Logger } from './logger.js';

export function observeSafely<T>(observer: T | undefined, report: (observer: T) => void, log: Logger): void {
  if (!observer) return;
  try {
    report(observer);
  } catch (error) {
    log.error({ err: (error as Error).message }, 'recording a metric failed');
  }
}
