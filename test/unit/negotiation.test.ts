import assert from 'node:assert/strict';
import { test } from 'node:test';
import { negotiate, type NegotiationPolicy } from '../../src/dimse/negotiation.js';
import { DICOM_APPLICATION_CONTEXT, type AssociateRequest } from '../../src/dimse/pdu.js';

const CT = '1.2.840.10008.5.1.4.1.1.2';
const IMPLICIT = '1.2.840.10008.1.2';
const EXPLICIT = '1.2.840.10008.1.2.1';
const JPEG_LS = '1.2.840.10008.1.2.4.80';

function policy(overrides: Partial<NegotiationPolicy> = {}): NegotiationPolicy {
  return {
    aeTitle: 'GANTRY',
    implementationClassUid: '1.2.3',
    implementationVersionName: 'TEST',
    maxPduLength: 65536,
    maxAsyncOperations: 16,
    callerAllowed: () => true,
    admit: () => true,
    serviceFor: (uid) => (uid === '1.2.840.10008.1.1' ? 'verification' : uid === CT ? 'storage' : undefined),
    transferSyntaxAccepted: (_kind, syntax) => [IMPLICIT, EXPLICIT, JPEG_LS].includes(syntax),
    ...overrides,
  };
}

function request(overrides: Partial<AssociateRequest> = {}): AssociateRequest {
  return {
    protocolVersion: 1,
    calledAeTitle: 'GANTRY',
    callingAeTitle: 'CT01',
    applicationContext: DICOM_APPLICATION_CONTEXT,
    presentationContexts: [{ id: 1, abstractSyntax: CT, transferSyntaxes: ['1.2.840.10008.1.2.4.91', JPEG_LS, EXPLICIT] }],
    userInformation: { maxPduLength: 16384, implementationClassUid: '9.9', roleSelections: [], extendedNegotiations: [] },
    ...overrides,
  };
}

test('the first offered syntax Gantry reads is chosen, in the caller order', () => {
  const outcome = negotiate(request(), '127.0.0.1', policy());
  assert.equal(outcome.kind, 'accept');
  if (outcome.kind !== 'accept') return;
  assert.deepEqual(outcome.accept.presentationContexts, [{ id: 1, result: 0, transferSyntax: JPEG_LS }]);
  assert.equal(outcome.peerMaxPduLength, 16384);
  assert.equal(outcome.accept.userInformation.maxPduLength, 65536);
});

test('unknown abstract syntaxes and unreadable syntaxes get results 3 and 4', () => {
  const outcome = negotiate(
    request({
      presentationContexts: [
        { id: 1, abstractSyntax: '1.2.3.4.5', transferSyntaxes: [IMPLICIT] },
        { id: 3, abstractSyntax: CT, transferSyntaxes: ['1.2.840.113619.5.2'] },
        { id: 5, abstractSyntax: CT, transferSyntaxes: [IMPLICIT] },
      ],
    }),
    '127.0.0.1',
    policy(),
  );
  assert.equal(outcome.kind, 'accept');
  if (outcome.kind !== 'accept') return;
  assert.deepEqual(outcome.accept.presentationContexts.map((c) => c.result), [3, 4, 0]);
});

test('a wrong called AE title is rejected permanent, service user, reason 7', () => {
  const outcome = negotiate(request({ calledAeTitle: 'OTHER' }), '127.0.0.1', policy());
  assert.deepEqual(outcome.kind === 'reject' && outcome.reject, { result: 1, source: 1, reason: 7 });
});

test('a calling AE title that is no AE title (control characters, a backslash, nothing) is rejected permanent, service user, reason 3', () => {
  for (const callingAeTitle of ['EVIL\x1b[31m\x07', 'CT\\01', '', 'CT\x0001']) {
    const outcome = negotiate(request({ callingAeTitle }), '127.0.0.1', policy());
    assert.deepEqual(outcome.kind === 'reject' && outcome.reject, { result: 1, source: 1, reason: 3 }, JSON.stringify(callingAeTitle));
  }
  for (const callingAeTitle of ['CT01', 'A', 'SIXTEEN_CHARS_AE', 'ct 01 (room 2)']) assert.equal(negotiate(request({ callingAeTitle }), '127.0.0.1', policy()).kind, 'accept', callingAeTitle);
});

test('a caller not on the allow-list is rejected permanent, service user, reason 3', () => {
  const outcome = negotiate(request(), '10.0.0.9', policy({ callerAllowed: () => false }));
  assert.deepEqual(outcome.kind === 'reject' && outcome.reject, { result: 1, source: 1, reason: 3 });
});

test('over a limit: rejected transient, service provider (presentation), local limit exceeded', () => {
  const outcome = negotiate(request(), '127.0.0.1', policy({ admit: () => false }));
  assert.deepEqual(outcome.kind === 'reject' && outcome.reject, { result: 2, source: 3, reason: 2 });
});

test('a refused caller never takes a place under the limits', () => {
  let admitted = 0;
  negotiate(request({ calledAeTitle: 'OTHER' }), '127.0.0.1', policy({ admit: () => (admitted += 1) > 0 }));
  assert.equal(admitted, 0);
});

test('no acceptable context rejects the association; a bad protocol version too', () => {
  const none = negotiate(request({ presentationContexts: [{ id: 1, abstractSyntax: '1.2.3', transferSyntaxes: [IMPLICIT] }] }), '127.0.0.1', policy());
  assert.deepEqual(none.kind === 'reject' && none.reject, { result: 1, source: 1, reason: 1 });
  const version = negotiate(request({ protocolVersion: 2 }), '127.0.0.1', policy());
  assert.deepEqual(version.kind === 'reject' && version.reject, { result: 1, source: 2, reason: 2 });
});

test('an asynchronous operations window is negotiated down to Gantry limit, not refused', () => {
  const outcome = negotiate(
    request({ userInformation: { maxPduLength: 0, implementationClassUid: '9', roleSelections: [], extendedNegotiations: [], asyncOperations: { maxOperationsInvoked: 0, maxOperationsPerformed: 0 } } }),
    '127.0.0.1',
    policy(),
  );
  assert.equal(outcome.kind, 'accept');
  if (outcome.kind !== 'accept') return;
  assert.deepEqual(outcome.accept.userInformation.asyncOperations, { maxOperationsInvoked: 16, maxOperationsPerformed: 1 });
  assert.equal(outcome.operationsWindow, 16);
  const small = negotiate(
    request({ userInformation: { maxPduLength: 0, implementationClassUid: '9', roleSelections: [], extendedNegotiations: [], asyncOperations: { maxOperationsInvoked: 4, maxOperationsPerformed: 4 } } }),
    '127.0.0.1',
    policy(),
  );
  assert.equal(small.kind === 'accept' && small.operationsWindow, 4);
});

test('role selection: the caller may be SCU of an accepted class; Gantry takes no SCU role', () => {
  const outcome = negotiate(
    request({
      userInformation: {
        maxPduLength: 0,
        implementationClassUid: '9',
        extendedNegotiations: [],
        roleSelections: [
          { sopClassUid: CT, scuRole: true, scpRole: true },
          { sopClassUid: '1.2.3.4', scuRole: true, scpRole: false },
        ],
      },
    }),
    '127.0.0.1',
    policy(),
  );
  assert.equal(outcome.kind, 'accept');
  if (outcome.kind !== 'accept') return;
  assert.deepEqual(outcome.accept.userInformation.roleSelections, [{ sopClassUid: CT, scuRole: true, scpRole: false }]);
});

test('a peer maximum PDU length too small to carry a PDV is refused, not honoured', () => {
  const tiny = negotiate(request({ userInformation: { maxPduLength: 6, implementationClassUid: '9', roleSelections: [], extendedNegotiations: [] } }), '127.0.0.1', policy());
  assert.deepEqual(tiny.kind === 'reject' && tiny.reject, { result: 1, source: 1, reason: 1 });
  const unlimited = negotiate(request({ userInformation: { maxPduLength: 0, implementationClassUid: '9', roleSelections: [], extendedNegotiations: [] } }), '127.0.0.1', policy());
  assert.equal(unlimited.kind, 'accept');
});

// Found in the retrieve review, then in the review of the session's diff: where Gantry sends a
// C-GET's instances, a first JPEG accepted failed every uncompressed object, while little endian
// accepted for a first MPEG-2 left video no context at all (Gantry cannot decode it).
test('a C-GET storage context takes little endian when the caller’s first syntax has a little-endian form, and its first otherwise', () => {
  const MPEG2 = '1.2.840.10008.1.2.4.100';
  const chosen = (first: string, roles: { scuRole: boolean; scpRole: boolean }, mayGet = true) => {
    const outcome = negotiate(
      request({
        presentationContexts: [{ id: 1, abstractSyntax: CT, transferSyntaxes: [first, EXPLICIT, IMPLICIT] }],
        userInformation: { maxPduLength: 16384, implementationClassUid: '9.9', roleSelections: [{ sopClassUid: CT, ...roles }], extendedNegotiations: [] },
      }),
      '127.0.0.1',
      policy({ mayGet: () => mayGet, transferSyntaxAccepted: (_kind, syntax) => [IMPLICIT, EXPLICIT, JPEG_LS, MPEG2].includes(syntax) }),
    );
    return outcome.kind === 'accept' ? outcome.accept.presentationContexts[0]?.transferSyntax : outcome.kind;
  };
  assert.equal(chosen(JPEG_LS, { scuRole: false, scpRole: true }), EXPLICIT, 'Gantry decodes JPEG-LS: little endian carries every object');
  assert.equal(chosen(MPEG2, { scuRole: false, scpRole: true }), MPEG2, 'MPEG-2 goes only as stored');
  assert.equal(chosen(JPEG_LS, { scuRole: true, scpRole: true }), JPEG_LS, 'a caller that also sends on it keeps its choice');
  assert.equal(chosen(JPEG_LS, { scuRole: false, scpRole: true }, false), JPEG_LS, 'no C-GET: the caller’s choice');
});
