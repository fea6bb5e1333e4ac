/**
 * The one schema of Gantry's configuration. It holds every default: a config file names only what
 * it changes. Descriptions here are the source of the configuration reference in docs/.
 */
import { availableParallelism } from 'node:os';
import { z } from 'zod';

/** PS3.5 6.2: an AE title is 1–16 characters of the default repertoire, no backslash or control
 * characters, and not all spaces. Leading and trailing spaces are not significant. */
const aeTitle = z
  .string()
  .transform((value) => value.trim())
  .refine((value) => value.length >= 1 && value.length <= 16, {
    message: 'an AE title has 1 to 16 characters (PS3.5 6.2)',
  })
  .refine((value) => /^[\x20-\x5b\x5d-\x7e]+$/.test(value), {
    message: 'an AE title uses printable ASCII characters without backslash (PS3.5 6.2)',
  });

const port = z.number().int().min(0).max(65535);
/** Node's timers take at most 2^31-1 ms; a longer one fires at once (TimeoutOverflowWarning), which
 * made an idle timeout of 3,000,000 s abort every association (found in a review). */
const MAX_TIMER_SECONDS = 2_147_483;
const seconds = z.number().positive().max(MAX_TIMER_SECONDS);

/** "AE_TITLE" or "AE_TITLE@host" (host: an IP address or a name, required with `hostRequired`), the
 * AE title held to the rules of the object form's (found in a review: "  " passed, and, trimmed to
 * nothing, left an allow-list that matched no caller). */
function callerText(hostRequired: boolean, message: string) {
  return z.string().refine((value) => {
    if (value.split('@').length > 2) return false;
    const [title, host] = callerEntryParts(value);
    return aeTitle.safeParse(title).success && (host === undefined ? !hostRequired : /^[^@\s]+$/.test(host));
  }, message);
}

/** A host name or an IP address; one of spaces only is none (found in the config review: accepted, it
 * failed at its first use). */
const hostName = z.string().trim().min(1);

/** A caller on the allow-list: "AE_TITLE" or "AE_TITLE@host" (host: an IP address or a name). */
const allowedCaller = z.union([
  callerText(false, 'expected "AE_TITLE" or "AE_TITLE@host" (an AE title has 1 to 16 printable ASCII characters without backslash, PS3.5 6.2)'),
  z.object({ aeTitle, host: hostName.optional().describe('An IP address or a host name (resolved at start and at each reload) the caller must come from; absent: any address.') }).strict(),
]);

/** A caller that sees original identities (query.sourceCallers): its AE title and the host it must
 * come from, since an AE title alone proves nothing (any peer can send any calling AE title). */
const sourceCaller = z.union([
  callerText(true, 'expected "AE_TITLE@host": a source caller sees original identities, and an AE title alone proves nothing'),
  z.object({ aeTitle, host: hostName.describe('An IP address or a host name (resolved at start and at each reload) the caller must come from.') }).strict(),
]);

/** The AE title and, if given, the host of an allowedCallers or sourceCallers entry. */
export function callerEntryParts(entry: string | { aeTitle: string; host?: string | undefined }): [string, string | undefined] {
  if (typeof entry !== 'string') return [entry.aeTitle, entry.host];
  const at = entry.lastIndexOf('@');
  return at < 0 ? [entry.trim(), undefined] : [entry.slice(0, at).trim(), entry.slice(at + 1).trim()];
}

const sopClassUid = z.string().regex(/^[0-9]+(\.[0-9]+)*$/, 'expected a UID such as 1.3.12.2.1107.5.9.1');

/** How long to keep files after every destination confirmed them: a number of days, or a duration
 * like "36h", "90m", "7d"; 0 keeps them forever. Parsed to milliseconds. */
const retention = z
  .union([z.number().min(0), z.string().regex(/^\s*\d+(\.\d+)?\s*[smhd]\s*$/, 'expected a number of days or a duration like "7d", "36h", "90m"')])
  .transform((value) => {
    if (typeof value === 'number') return value * DAY_MS;
    const match = /^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$/.exec(value) as RegExpExecArray;
    return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
  })
  // Huge (1e308 days is Infinity ms) or tiny, config show wrote it as "Infinitys" or with an exponent
  // ("8.64e+24s"), which the config then refused (found in two reviews). The bounds are far from any
  // retention in use, which an upgrade must not refuse.
  .refine((ms) => ms === 0 || (ms >= 1 && ms <= 10_000_000 * DAY_MS), { message: 'expected 0 (keep forever), or from 1 millisecond to 10000000 days' });
/**
 * De-identification threads by default: one per CPU but one, which the receive path (the main thread)
 * keeps. On this project's 2-core VM a second thread cost 34 MB of peak RSS and no throughput gained
 * (bench/results-2026-11-29-forward.txt, end to end: 111.6 instances/s at 154 MB with one thread,
 * 105.3 at 188 MB with two).
 */
export function defaultDeidWorkers(cpus = availableParallelism()): number {
  return Math.max(1, cpus - 1);
}

const DAY_MS = 86_400_000;
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS } as const;

/** A retention in milliseconds written back as the config takes it ("7d", "36h"; 0 forever), so that
 * what `gantry config show` prints means the same when pasted into a config. */
export function retentionText(ms: number): number | string {
  if (ms === 0) return 0;
  const unit = (['d', 'h', 'm', 's'] as const).find((candidate) => ms % UNIT_MS[candidate] === 0) ?? 's';
  return `${ms / UNIT_MS[unit]}${unit}`;
}

/** Which instances a destination, rule or profile applies to; every part given must hold. */
const condition = z
  .object({
    // AE titles as every other key takes them: one no caller can send (17 characters, non-ASCII, an
    // empty list) made a condition that never held, a no-consent rule that never fired (found in the
    // config review).
    callingAeTitle: z
      .union([aeTitle, z.array(aeTitle).min(1)])
      .optional()
      .describe('The calling AE title that sent the instance (1 to 16 printable ASCII characters, PS3.5 6.2), or a list of at least one.'),
    attributes: z
      .record(z.string(), z.union([z.string(), z.number()]))
      .optional()
      .describe('Attribute keyword → an exact value, or a /regular expression/ on the value (flags i, m, s, u; not g or y).'),
  })
  .strict();

const destination = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a name of letters, digits, "_", "." or "-"').describe('The name in the outbox, logs, metrics and gantry queue.'),
    aeTitle: aeTitle.describe('The called AE title of the destination.'),
    host: hostName.describe('Host name or IP address of the destination.'),
    port: port.min(1).describe('DICOM port of the destination.'),
    callingAeTitle: aeTitle.optional().describe('The calling AE title Gantry uses towards it (default dicom.aeTitle).'),
    maxAssociations: z.number().int().min(1).max(64).default(1).describe('Associations Gantry opens to it at once, at most. One refused while another is open is not a failure: that sender waits for the other to end (a warning says so once).'),
    maxOperations: z.number().int().min(1).max(256).default(16).describe('The asynchronous operations window Gantry proposes (the destination may grant less).'),
    when: condition.optional().describe('Only instances for which this holds go to this destination; absent: all.'),
  })
  .strict();

export const DEID_OPTION_NAMES = [
  'retainSafePrivate',
  'retainUIDs',
  'retainDeviceIdentity',
  'retainInstitutionIdentity',
  'retainPatientCharacteristics',
  'retainLongitudinalFullDates',
  'retainLongitudinalModifiedDates',
  'cleanDescriptors',
  'cleanStructuredContent',
  'cleanGraphics',
  'cleanPixelData',
] as const;

const privateTag = z
  .object({
    creator: z.string().min(1).describe('The Private Creator value that reserves the block, e.g. SIEMENS CSA HEADER.'),
    tag: z
      .string()
      .regex(/^[0-9A-Fa-f]{3}[13579BDFbdf],xx[0-9A-Fa-f]{2}$/, 'expected a private tag as "gggg,xxee" (odd group)')
      .describe('The element within the block, as "gggg,xxee" (odd group; xx stands for the block).'),
  })
  .strict();

const attributeRef = z.union([z.string().min(1), privateTag]).describe('A keyword (PatientName), a tag "(0010,0010)", or a private element { creator, tag } (a private element by its bare tag only to remove or empty it).');

/** A rule of deid.rules or of a named profile (see src/deid/rules.ts). */
const ruleWhen = condition.optional().describe('The rule applies only to instances for which this holds.');
const deidRule = z.discriminatedUnion('action', [
  z
    .object({ action: z.literal('quarantine').describe('Hold the instance back with `reason`.'), reason: z.string().min(1).describe('Why, as gantry quarantine ls shows it (no patient data).'), when: ruleWhen })
    .strict(),
  z.object({ action: z.literal('pass').describe('Let the instance through the burned-in pixel check.'), when: ruleWhen }).strict(),
  z
    .object({
      action: z.literal('replace').describe('Write `value` into the attribute.'),
      attribute: attributeRef,
      value: z.string().describe('The value written by replace: printable ASCII, and CR, LF, FF and TAB in LT, ST and UT (it is written as it is into datasets of every character set).'),
      when: ruleWhen,
    })
    .strict(),
  z
    .object({
      action: z
        .enum(['keep', 'remove', 'empty', 'hash', 'shiftDate', 'remapUid'])
        .describe('keep, remove, empty (zero length), hash (keyed pseudonym), shiftDate (the patient\'s offset) or remapUid (keyed UID) the attribute.'),
      attribute: attributeRef,
      when: ruleWhen,
    })
    .strict(),
]);

const deidOptions = z
  .array(z.enum(DEID_OPTION_NAMES))
  .default([])
  .refine((options) => !(options.includes('retainLongitudinalFullDates') && options.includes('retainLongitudinalModifiedDates')), {
    message: 'retainLongitudinalFullDates and retainLongitudinalModifiedDates exclude each other; choose one',
  });

export const configSchema = z
  .object({
    dicom: z
      .object({
        aeTitle: aeTitle.default('GANTRY').describe('The AE title Gantry answers to; other called AE titles are rejected.'),
        host: hostName.default('0.0.0.0').describe('The address the DICOM listener binds to.'),
        port: port.default(11112).describe('The DICOM listener port (0 picks a free port).'),
        allowedCallers: z
          .array(allowedCaller)
          .default([])
          .describe('Calling AE titles allowed to associate, as "AE" or "AE@host", or { aeTitle, host? }; empty allows anyone.'),
        maxAssociations: z.number().int().min(1).max(1000).default(32).describe('Concurrent associations in all.'),
        maxAssociationsPerCaller: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(8)
          .describe('Concurrent associations per calling AE title.'),
        maxPduLength: z
          .number()
          .int()
          .min(4096)
          .max(16 * 1024 * 1024)
          .default(262144)
          .describe('The maximum PDU length Gantry announces in A-ASSOCIATE-AC (PS3.8 D.1); longer PDUs are read too.'),
        maxAsyncOperations: z
          .number()
          .int()
          .min(1)
          .max(256)
          .default(16)
          .describe('The asynchronous operations window Gantry grants when a caller proposes one (PS3.7 D.3.3.3).'),
        artimTimeoutSeconds: seconds.default(30).describe('ARTIM timer: wait for A-ASSOCIATE-RQ and for the peer to close.'),
        idleTimeoutSeconds: seconds.default(300).describe('An association without progress for this long (no message completed, under 64 KiB received) is aborted.'),
        acceptUnknownSopClasses: z
          .boolean()
          .default(false)
          .describe('Accept storage of SOP classes outside PS3.4 Table B.5-1 and extraSopClasses.'),
        extraSopClasses: z
          .array(sopClassUid)
          .default([])
          .describe('More storage SOP classes to accept, e.g. Siemens CSA Non-Image 1.3.12.2.1107.5.9.1.'),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        path: z.string().min(1).default('./data').describe('Where the SQLite index and the stored objects live.'),
        minFreeBytes: z
          .number()
          .int()
          .min(0)
          .default(1024 * 1024 * 1024)
          .describe('Below this much free disk, less what the de-identified copies of the instances waiting for de-identification will take (about their size), C-STORE answers 0xA700 (out of resources) and /readyz is unready.'),
        duplicates: z
          .enum(['replace', 'keepFirst'])
          .default('replace')
          .describe('A re-sent SOP Instance UID replaces the stored copy, or the first copy is kept.'),
        retainOriginals: retention
          .prefault(7)
          .describe('Delete an original (PHI) this long after every destination confirmed its de-identified copy: days, or "36h"; 0 keeps originals forever.'),
        retainDeidentified: retention
          .prefault(7)
          .describe('Delete a de-identified copy this long after every destination confirmed it: days, or "36h"; 0 keeps them forever.'),
      })
      .strict()
      .prefault({}),
    http: z
      .object({
        host: hostName.default('0.0.0.0').describe('The address of the HTTP endpoints (/metrics, /healthz, /readyz).'),
        port: port.default(8080).describe('The port of GET /metrics (Prometheus), /healthz (the process answers) and /readyz (the DICOM listener is bound, the index open, its write lock not held by another process for 5 s and index.sqlite still the file opened, free disk at least storage.minFreeBytes, storage.path taking writes; else 503 with the failing checks).'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .describe('pino log level (GANTRY_LOG_LEVEL overrides it).'),
      })
      .strict()
      .prefault({}),
    query: z
      .object({
        sourceCallers: z
          .array(sourceCaller)
          .default([])
          .describe('Callers (the hospital side) that may query the index with C-FIND and see original identities, as "AE@host" or { aeTitle, host }: the AE title from that host only; other callers get no query service.'),
        researchCallers: z
          .array(aeTitle)
          .default([])
          .describe('Calling AE titles (researchers) that may query with C-FIND and see only de-identified attributes and UIDs of de-identified instances.'),
        maxResults: z.number().int().min(1).max(1_000_000).default(10_000).describe('At most this many matches per C-FIND; the rest are left out and logged, and the query ends with 0xFE00, not Success.'),
        moveDestinations: z
          .array(
            z
              .object({
                aeTitle,
                host: hostName.describe('Host name or IP address of the move destination.'),
                port: port.min(1).describe('Its DICOM port.'),
                sourceSide: z.boolean().default(false).describe('On the hospital side: may receive originals.'),
              })
              .strict(),
          )
          .default([])
          // A C-MOVE names its destination by AE title alone: listed twice, the first entry won, and
          // whether it is sourceSide (gets originals) depended on the order (found in a review).
          .refine((destinations) => new Set(destinations.map((destination) => destination.aeTitle.trim())).size === destinations.length, {
            message: 'an AE title is listed twice; a C-MOVE names its destination by AE title alone, so each must be listed once',
          })
          .describe('The AEs a C-MOVE may send to, by AE title: { aeTitle, host, port, sourceSide? }. Research callers move de-identified copies.'),
        sourceRetrievesOriginals: z
          .boolean()
          .default(false)
          .describe('Source callers get the originals when they move to a sourceSide destination, or C-GET as a sourceSide entry of moveDestinations (AE title and address); else the de-identified copies. Originals never go elsewhere.'),
      })
      .strict()
      .refine((query) => !query.sourceCallers.some((entry) => query.researchCallers.includes(callerEntryParts(entry)[0])), {
        message: 'an AE title is in both query.sourceCallers and query.researchCallers; a caller sees one view',
      })
      .prefault({}),
    forward: z
      .object({
        stableSeconds: seconds
          .default(30)
          .describe('A study is forwarded once nothing arrived for it for this long and none of its instances waits for de-identification.'),
        destinations: z
          .array(destination)
          .default([])
          .describe(
            'Where de-identified studies go: { name, aeTitle, host, port, callingAeTitle? (default dicom.aeTitle), maxAssociations? (1), maxOperations? (asynchronous window proposed, 16), when? { callingAeTitle, attributes } }. Every destination whose `when` holds gets the instance; `attributes` test indexed attributes (Modality, BodyPartExamined, SeriesDescription, StudyDescription, Manufacturer, ManufacturerModelName, StationName, InstitutionName, SOPClassUID, ImageType) with exact values or /regular expressions/.',
          ),
        retry: z
          .object({
            baseSeconds: seconds.default(10).describe('The delay after the first failure.'),
            multiplier: z.number().min(1).max(10).default(2).describe('Each further failure multiplies the delay by this.'),
            maxSeconds: seconds.default(3600).describe('The delay never exceeds this.'),
            maxAttempts: z.number().int().min(1).max(1000).default(10).describe('Failed attempts of one instance before it goes to dead letter.'),
          })
          .strict()
          .prefault({})
          .describe('Backoff after a failure: base × multiplier^(failures − 1), at most maxSeconds. An instance the destination refuses maxAttempts times goes to dead letter; an unreachable destination is retried forever.'),
        warningIsSuccess: z.boolean().default(true).describe('A warning status (0x0001, 0x0107, 0x0116, 0xBxxx) from the destination counts as stored.'),
        connectTimeoutSeconds: seconds.default(10).describe('How long to wait for a connection and for A-ASSOCIATE-AC.'),
        responseTimeoutSeconds: seconds.default(300).describe('How long to wait for a C-STORE response once a dataset is sent, counted from the last response while several are outstanding (a destination may work them one at a time).'),
      })
      .strict()
      .prefault({}),
    deid: z
      .object({
        secret: z
          .string()
          .min(16)
          // A key of spaces, or of one character repeated, is no secret (found in the config review).
          // Nothing more is asked: a deployment's secret, once in use, cannot change without changing
          // every pseudonym, and an upgrade must not refuse it.
          .refine((value) => new Set(value.replace(/\s/g, '')).size >= 2, { message: 'spaces, or one character repeated, are no secret (a new deployment generates one: openssl rand -base64 32)' })
          .optional()
          .describe('The key of all keyed pseudonyms (at least 16 characters; one that looks guessable, or has whitespace around it, is warned of at start and by config check); use ${ENV_VAR} references. Required in an operator config.'),
        options: deidOptions.describe('PS3.15 Annex E options.'),
        dateShift: z
          .object({
            minDays: z.number().int().min(0).default(30).describe('The smallest shift, in days.'),
            maxDays: z.number().int().min(1).max(36500).default(3650).describe('The largest shift, in days.'),
          })
          .strict()
          .refine((shift) => shift.maxDays >= shift.minDays, { message: 'maxDays must be at least minDays' })
          .prefault({})
          .describe('With retainLongitudinalModifiedDates, each patient\'s dates move back by a keyed number of days in this range.'),
        maxAgeYears: z.number().int().min(1).max(150).default(89).describe('Ages above this are written as this + 1, and a kept birth date that shows an older age (against the study date, or today when the instance has none) is emptied (HIPAA Safe Harbor: 89).'),
        workers: z
          .number()
          .int()
          .min(1)
          .max(64)
          .default(defaultDeidWorkers())
          .describe('Worker threads that de-identify (default: the number of CPUs less one, at least 1: the receive path keeps a CPU).'),
        largeInstanceHeapMb: z
          .number()
          .int()
          .min(0)
          .max(16384)
          .default(1024)
          .describe(
            'An instance whose header runs a de-identification thread out of its 96 MB heap (about 250,000 data elements: an RT Structure Set of tens of thousands of contours, a large SR or Segmentation) is done once more in a thread of its own with a heap of this many MB, one such instance at a time (in the node and in gantry export); only then is it recorded as failed. 0: such instances fail at once.',
          ),
        receiveFirst: z
          .boolean()
          .default(true)
          .describe(
            'While stores keep arriving (until a pause of 250 ms), de-identification waits, at most until the instance waiting that arrived first has waited half of forward.stableSeconds: a burst is acknowledged at the rate of the receive path alone, and, when the backlog clears in the other half, its study is forwarded no later.',
          ),
        quarantineOnFindings: z
          .boolean()
          .default(true)
          .describe('Hold back an instance whose kept free text quotes the patient\'s name, an identifier or a date (the findings scan).'),
        safePrivate: z
          .array(privateTag)
          .default([])
          .describe('With retainSafePrivate: private elements known to hold nothing identifying, as { creator, tag: "0019,xx23" } (besides those an instance declares safe itself, PS3.15 E.3.10).'),
        safePrivateStarter: z
          .boolean()
          .default(true)
          .describe('With retainSafePrivate: also keep the 474 safe private attributes of PS3.15 Table E.3.10-1 (src/deid/safe-private-starter.ts).'),
        encryption: z
          .object({
            recipientCertificate: z.string().min(1).describe('PEM file of the X.509 certificate (RSA key of at least 2048 bits) of whoever may re-identify; the certificate alone (a file holding the private key too is refused); warned of within 30 days of its expiry and after.'),
          })
          .strict()
          .optional()
          .describe('Reversible pseudonymisation: the original values go into the Encrypted Attributes Sequence for this recipient (PS3.15 E.1.2).'),
        pixelZones: z
          .string()
          .min(1)
          .optional()
          .describe(
            'With the option cleanPixelData: a YAML file of redaction zones per device, `zones: [{ name, match: { Keyword: value | "/regex/" | "<= 600" }, rects: [[x, y, width, height]], outsideUltrasoundRegions? }]`; a plain value matches whatever its case and spacing; the first zone whose match holds is blanked in every frame. Read at start and reload; a bad file names the zone and key.',
          ),
        rules: z.array(deidRule).default([]).describe('Rules that override the profile per attribute, or quarantine or pass an instance.'),
        profiles: z
          .array(
            z
              .object({
                name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a name of letters, digits, "_", "." or "-"').describe('The profile\'s name, recorded in each instance\'s audit.'),
                when: condition.describe('The instances this profile de-identifies.'),
                options: deidOptions.describe('PS3.15 Annex E options of this profile (instead of deid.options).'),
                rules: z.array(deidRule).default([]).describe('Rules of this profile (instead of deid.rules).'),
              })
              .strict(),
          )
          .default([])
          // The name is what each instance's audit records: two of one name could not be told apart.
          .refine((profiles) => new Set(profiles.map((profile) => profile.name)).size === profiles.length, { message: 'two profiles have the same name; the audit records the name, so each must be its own' })
          .describe('Named profiles: the first whose condition holds de-identifies the instance; otherwise deid.options and deid.rules do.'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type GantryConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
export type DestinationConfig = z.infer<typeof destination>;
