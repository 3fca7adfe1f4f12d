import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Context,
  DirectiveError,
  HandlerError,
  PermanentError,
  Signal,
  TransientError,
  contextHandler,
  directive,
  signalHandler,
  tenantHandler,
} from '../src/index.js';
import { Harness } from '../src/testing.js';

const harness = () => new Harness('org_acme', { handlerName: 'h' }).allow(['ok.one']);
const runOn = (handler) => {
  const h = harness();
  return h.run(h.signal('s.happened', { n: 1 }), handler);
};

test('typed errors end the run as themselves', () => {
  const transient = runOn(() => {
    throw new TransientError('later');
  });
  assert.ok(transient.result.error instanceof TransientError);
  assert.equal(transient.result.error.kind, 'transient');
  const permanent = runOn(() => {
    throw new PermanentError('never');
  });
  assert.equal(permanent.result.error.kind, 'permanent');
});

test('a HandlerError that is neither transient nor permanent ends the run as permanent', () => {
  class Mine extends HandlerError {}
  for (const error of [new HandlerError('bare'), new Mine('mine')]) {
    const run = runOn(() => {
      throw error;
    });
    assert.ok(run.result.error instanceof PermanentError, error.message);
    assert.equal(run.result.error.kind, 'permanent');
    assert.equal(run.result.error.message, error.message);
    assert.equal(run.result.error.cause, error);
  }
  assert.equal(new HandlerError('x').kind, 'permanent');
  class Later extends TransientError {}
  assert.ok(runOn(() => { throw new Later('l'); }).result.error instanceof Later);
});

test('a refused directive thrown out of the handler fails permanently', () => {
  const run = runOn((signal) => {
    directive('not.allowed').request(signal);
  });
  assert.ok(run.result.error instanceof PermanentError);
  assert.match(run.result.error.message, /^directive refused \(not permitted\): directive not\.allowed/);
});

test('any other exception escapes the run, as a trap would', () => {
  assert.throws(
    () =>
      runOn(() => {
        throw new TypeError('a bug');
      }),
    TypeError,
  );
});

test('a handler that returns a Promise fails permanently', () => {
  const run = runOn(async () => {});
  assert.equal(run.result.error.kind, 'permanent');
  assert.match(run.result.error.message, /synchronous/);
});

test('payload, metadata, options and settings that do not fit are permanent', () => {
  const signal = new Signal({ id: 'i', tenant: 't', name: 'n', payloadJson: '{"a":', metadataJson: '[]' });
  assert.throws(() => signal.payload(), PermanentError);
  assert.deepEqual(signal.metadata(), []);
  assert.throws(
    () =>
      signal.metadata((v) => {
        if (!Array.isArray(v) || v.length === 0) throw new Error('empty');
      }),
    (e) => e instanceof PermanentError && e.message === 'metadata of n does not fit: empty',
  );
  const context = new Context({ signalName: 'n', optionsJson: 'nope', settingsJson: '{}', packages: [] });
  assert.throws(() => context.options(), PermanentError);
  assert.deepEqual(context.settings(), {});
});

test('setting reads a JSON pointer; hasPackage looks for an exact name', () => {
  const context = new Context({
    settingsJson: JSON.stringify({ forum: { auto: true, 'a/b': 1, 'm~n': 2, list: [5, 6] } }),
    packages: ['forum'],
  });
  assert.equal(context.setting('/forum/auto'), true);
  assert.equal(context.setting('/forum/a~1b'), 1);
  assert.equal(context.setting('/forum/m~0n'), 2);
  assert.equal(context.setting('/forum/list/1'), 6);
  assert.equal(context.setting('/forum/list/01'), undefined);
  assert.equal(context.setting('/forum/list/length'), undefined, 'an array index is digits only');
  assert.equal(context.setting('/forum/missing'), undefined);
  assert.equal(context.setting('/forum/auto/deeper'), undefined);
  assert.deepEqual(context.setting(''), JSON.parse(context.settingsJson));
  assert.equal(context.hasPackage('forum'), true);
  assert.equal(context.hasPackage('for'), false);
});

// The WIT values as the componentizers pass them: StarlingMonkey gives
// undefined for an absent option, QuickJS null.
const rawSignal = {
  id: 'sig_1', tenant: 'org_acme', name: 's', payload: '{"n":1}', metadata: '{}',
  dedupeKey: null, occurredAt: 'o', correlationId: 'c', causationId: undefined,
  actor: { type: 'user', id: 'u_1' }, subject: null, source: null, insertedAt: 'i',
};
const rawContext = {
  tenant: 'org_acme', signalId: 'sig_1', signalName: 's', correlationId: 'c', causationId: null,
  attempt: 2, maxAttempts: 5, options: '{"o":1}', settings: '{"s":1}', packages: ['forum'],
};

test('each export converts the WIT values and returns on success', () => {
  const seen = [];
  tenantHandler((signal, tenant, context) => seen.push(signal, tenant, context))(rawSignal, 'org_acme', rawContext);
  contextHandler((signal, context) => seen.push(signal, context))(rawSignal, rawContext);
  signalHandler((signal) => seen.push(signal))(rawSignal);
  const [signal, tenant, context] = seen;
  assert.ok(signal instanceof Signal && context instanceof Context);
  assert.deepEqual(signal.payload(), { n: 1 });
  assert.equal(signal.dedupeKey, undefined, 'null from QuickJS reads as undefined');
  assert.deepEqual(signal.actor, { type: 'user', id: 'u_1' });
  assert.equal(tenant, 'org_acme');
  assert.deepEqual([context.attempt, context.maxAttempts], [2, 5]);
  assert.deepEqual([context.options(), context.settings()], [{ o: 1 }, { s: 1 }]);
  assert.ok(context.hasPackage('forum'));
  assert.ok(seen[3] instanceof Signal && seen[4] instanceof Context && seen[5] instanceof Signal);
});

test('an export throws the WIT handler-error variant, and rethrows a bug', () => {
  const ends = (fn) => {
    try {
      tenantHandler(fn)(rawSignal, 'org_acme', rawContext);
      return 'ok';
    } catch (error) {
      return error;
    }
  };
  assert.deepEqual(ends(() => { throw new TransientError('later'); }), { tag: 'transient', val: 'later' });
  assert.deepEqual(
    ends(() => { throw new DirectiveError('conflict', 'k'); }),
    { tag: 'permanent', val: 'directive refused (conflict): k' },
  );
  // Whatever HandlerError ends the function, the export throws a valid case.
  class Mine extends HandlerError {}
  class Odd extends PermanentError {
    get kind() {
      return 'fatal';
    }
  }
  class Soon extends TransientError {}
  assert.deepEqual(ends(() => { throw new HandlerError('bare'); }), { tag: 'permanent', val: 'bare' });
  assert.deepEqual(ends(() => { throw new Mine('mine'); }), { tag: 'permanent', val: 'mine' });
  assert.deepEqual(ends(() => { throw new Odd('odd'); }), { tag: 'permanent', val: 'odd' });
  assert.deepEqual(ends(() => { throw new Soon('soon'); }), { tag: 'transient', val: 'soon' });
  const quiet = console.error;
  console.error = () => {}; // the export logs the bug before the trap
  try {
    assert.ok(ends(() => { throw new RangeError('bug'); }) instanceof RangeError);
  } finally {
    console.error = quiet;
  }
});
