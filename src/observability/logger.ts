/**
 * The process logger: pino JSON lines. Nothing that identifies a patient is ever passed to it: no
 * patient names, IDs, birth dates or accession numbers at any level. Association loggers are children
 * that carry the association id.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'gantry' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

/** The logger of a one-shot command (deid, forward, export): on stderr, so that the command's own
 * output on stdout stays what it prints (found in a review: a JSON line among `gantry forward`'s). */
export function commandLogger(level: string): Logger {
  return createLogger(level, pino.destination({ dest: 2, sync: true }));
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
