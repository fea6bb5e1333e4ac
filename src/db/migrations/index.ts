/** Every schema migration, in order. A migration, once released, is never edited: add a new one. */
import type { Migration } from '../database.js';
import { migration001Index } from './001-index.js';
import { migration002Deid } from './002-deid.js';
import { migration003Forward } from './003-forward.js';
import { migration004Research } from './004-research.js';
import { migration005AccessAudit } from './005-access-audit.js';
import { migration006Release } from './006-release.js';
import { migration007OutboxFailedAt } from './007-outbox-failed-at.js';
import { migration008RedactionRenames } from './008-redaction-renames.js';
import { migration009Toolkit } from './009-toolkit.js';
import { migration010InstanceReferences } from './010-instance-references.js';
import { migration011AuditTexts } from './011-audit-texts.js';
import { migration012WaitingByArrival } from './012-waiting-by-arrival.js';
import { migration013WaitingBySeries } from './013-waiting-by-series.js';
import { migration014SupersededCopies } from './014-superseded-copies.js';
import { migration015ExportItemSizes } from './015-export-item-sizes.js';
import { migration016ReplacedOriginals } from './016-replaced-originals.js';
import { migration017WaitingSince } from './017-waiting-since.js';
import { migration018RoutingRecord } from './018-routing-record.js';
import { migration019FileStamps } from './019-file-stamps.js';
import { migration020StateCounts } from './020-state-counts.js';
import { migration021ForwardConfirmations } from './021-forward-confirmations.js';
import { migration022ReplacedToDelete } from './022-replaced-to-delete.js';
import { migration023DeidSecret } from './023-deid-secret.js';
import { migration024ConfirmationItems } from './024-confirmation-items.js';
import { migration025ReplacedOriginals } from './025-replaced-originals.js';

export const MIGRATIONS: readonly Migration[] = [migration001Index, migration002Deid, migration003Forward, migration004Research, migration005AccessAudit, migration006Release, migration007OutboxFailedAt, migration008RedactionRenames, migration009Toolkit, migration010InstanceReferences, migration011AuditTexts, migration012WaitingByArrival, migration013WaitingBySeries, migration014SupersededCopies, migration015ExportItemSizes, migration016ReplacedOriginals, migration017WaitingSince, migration018RoutingRecord, migration019FileStamps, migration020StateCounts, migration021ForwardConfirmations, migration022ReplacedToDelete, migration023DeidSecret, migration024ConfirmationItems, migration025ReplacedOriginals];
