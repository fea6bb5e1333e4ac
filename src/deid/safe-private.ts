/**
 * PS3.15 E.3.10, the Retain Safe Private Option: which private elements of a dataset level may stay.
 * An instance can say it itself, in its Private Data Element Characteristics Sequence (0008,0300):
 * per private block, SAFE (every element), MIXED (the Nonidentifying Private Elements listed; the
 * Identifying ones get the action named), or UNSAFE. Elements it does not describe stay only when the
 * configured list of safe private elements names them (by creator, group and element byte).
 */
import type { ElementNode } from '../dicom/dataset-tree.js';
import type { ConcreteAction } from './profile.js';

export interface SafePrivateElement {
  creator: string;
  /** The private group, e.g. 0x0019. */
  group: number;
  /** The element's low byte within its block, e.g. 0x23 for (0019,xx23). */
  element: number;
  /** The VR Table E.3.10-1 gives it, where known: what an implicit VR dataset does not say. */
  vr?: string;
}

const TAG = {
  PrivateDataElementCharacteristicsSequence: 0x00080300,
  PrivateGroupReference: 0x00080301,
  PrivateCreatorReference: 0x00080302,
  BlockIdentifyingInformationStatus: 0x00080303,
  NonidentifyingPrivateElements: 0x00080304,
  DeidentificationActionSequence: 0x00080305,
  IdentifyingPrivateElements: 0x00080306,
  DeidentificationAction: 0x00080307,
} as const;

interface BlockRule {
  status: string;
  nonIdentifying: Set<number>;
  actions: Map<number, string>;
}

/** Decides private elements at one dataset level. */
export class SafePrivatePolicy {
  /** "group/creator" → how the instance describes the block. */
  private readonly declared = new Map<string, BlockRule>();
  /** (group << 8 | block) → creator, from the private creator elements (gggg,00xx). */
  private readonly creators = new Map<number, string>();
  /** Configured safe elements by key, with their VR where the list gives one. */
  private readonly configured: Map<string, string | undefined>;

  constructor(elements: readonly ElementNode[], configured: readonly SafePrivateElement[], bigEndian: boolean) {
    // An element may be listed twice (the starter list, then deid.safePrivate, whose entries name no
    // VR): the VR one of them gives stays, for implicit VR datasets (retainedPrivateAction in engine.ts).
    this.configured = new Map();
    for (const safe of configured) {
      const at = key(safe.group, safe.creator, safe.element);
      this.configured.set(at, safe.vr ?? this.configured.get(at));
    }
    for (const element of elements) {
      const group = element.tag >>> 16;
      const number = element.tag & 0xffff;
      if (group % 2 === 1 && number >= 0x0010 && number <= 0x00ff) this.creators.set((group << 8) | number, text(element));
    }
    const declaration = elements.find((element) => element.tag === TAG.PrivateDataElementCharacteristicsSequence);
    for (const item of declaration?.items ?? []) {
      const find = (tag: number) => item.elements.find((element) => element.tag === tag);
      const group = u16s(find(TAG.PrivateGroupReference), bigEndian)[0];
      const creator = text(find(TAG.PrivateCreatorReference));
      if (group === undefined || creator === '') continue;
      const rule: BlockRule = {
        status: text(find(TAG.BlockIdentifyingInformationStatus)).toUpperCase(),
        nonIdentifying: new Set(u16s(find(TAG.NonidentifyingPrivateElements), bigEndian).map((value) => value & 0xff)),
        actions: new Map(),
      };
      for (const actionItem of find(TAG.DeidentificationActionSequence)?.items ?? []) {
        const findIn = (tag: number) => actionItem.elements.find((element) => element.tag === tag);
        const action = text(findIn(TAG.DeidentificationAction)).toUpperCase();
        for (const value of u16s(findIn(TAG.IdentifyingPrivateElements), bigEndian)) rule.actions.set(value & 0xff, action);
      }
      this.declared.set(`${group}/${creator}`, rule);
    }
  }

  /** The action for a private element (not a private creator), or 'remove'. */
  actionFor(tag: number): ConcreteAction {
    const group = tag >>> 16;
    const block = (tag >>> 8) & 0xff;
    const element = tag & 0xff;
    const creator = this.creators.get((group << 8) | block);
    if (creator === undefined) return 'remove'; // no creator: nothing can vouch for it
    const rule = this.declared.get(`${group}/${creator}`);
    if (rule) {
      if (rule.status === 'SAFE') return 'keep';
      if (rule.status === 'MIXED') {
        if (rule.nonIdentifying.has(element)) return 'keep';
        const action = rule.actions.get(element);
        if (action === 'D') return 'dummy';
        if (action === 'Z') return 'empty';
        if (action === 'U') return 'uid';
        return 'remove';
      }
      return 'remove';
    }
    return this.configured.has(key(group, creator, element)) ? 'keep' : 'remove';
  }

  /** The VR the configured list gives a private element, if it names one. */
  listedVr(tag: number): string | undefined {
    const group = tag >>> 16;
    const creator = this.creators.get((group << 8) | ((tag >>> 8) & 0xff));
    return creator === undefined ? undefined : this.configured.get(key(group, creator, tag & 0xff));
  }

}

function key(group: number, creator: string, element: number): string {
  return `${group}/${creator.trim()}/${element}`;
}

function text(element: ElementNode | undefined): string {
  return element?.value?.toString('latin1').replace(/[\0 ]+$/, '').trim() ?? '';
}

function u16s(element: ElementNode | undefined, bigEndian: boolean): number[] {
  const value = element?.value;
  if (!value) return [];
  const out: number[] = [];
  for (let i = 0; i + 1 < value.length; i += 2) out.push(bigEndian ? value.readUInt16BE(i) : value.readUInt16LE(i));
  return out;
}
