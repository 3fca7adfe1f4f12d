// The SDK's view of the values the host passes: the WIT records, with JSON
// text kept as text and read on demand.

import { PermanentError } from './errors.js';

/**
 * Parses `text` and hands the value to `check`, which returns what the
 * handler wants or throws. Either failure is permanent: retrying the same
 * signal cannot make its JSON fit.
 */
function parseJson(text, what, signalName, check) {
  try {
    return check(JSON.parse(text));
  } catch (error) {
    throw new PermanentError(`${what} of ${signalName} does not fit: ${error?.message ?? error}`);
  }
}

const asIs = (value) => value;

/** An immutable, tenant-scoped fact, as the host delivered it. */
export class Signal {
  constructor(fields) {
    this.id = fields.id;
    this.tenant = fields.tenant;
    this.name = fields.name;
    /** The payload as the host sent it: a JSON object, as text. */
    this.payloadJson = fields.payloadJson;
    /** The metadata: a JSON object, as text. */
    this.metadataJson = fields.metadataJson;
    this.dedupeKey = fields.dedupeKey ?? undefined;
    this.occurredAt = fields.occurredAt;
    this.correlationId = fields.correlationId ?? undefined;
    this.causationId = fields.causationId ?? undefined;
    this.actor = fields.actor ?? undefined;
    this.subject = fields.subject ?? undefined;
    this.source = fields.source ?? undefined;
    this.insertedAt = fields.insertedAt;
  }

  /** The payload, parsed and passed through `check` if given. */
  payload(check = asIs) {
    return parseJson(this.payloadJson, 'payload', this.name, check);
  }

  /** The metadata, parsed and passed through `check` if given. */
  metadata(check = asIs) {
    return parseJson(this.metadataJson, 'metadata', this.name, check);
  }
}

/**
 * What a handler may know besides the signal: its own options and the
 * invoking tenant's settings and packages, nothing of any other tenant.
 */
export class Context {
  constructor(fields) {
    this.tenant = fields.tenant;
    this.signalId = fields.signalId;
    this.signalName = fields.signalName;
    this.correlationId = fields.correlationId ?? undefined;
    this.causationId = fields.causationId ?? undefined;
    /** 1 for the first attempt. */
    this.attempt = fields.attempt;
    this.maxAttempts = fields.maxAttempts;
    /** The handler's manifest options: a JSON object, as text. */
    this.optionsJson = fields.optionsJson;
    /** The tenant's settings: a JSON object, as text. */
    this.settingsJson = fields.settingsJson;
    this.packages = [...fields.packages];
  }

  /** The handler's options, parsed and passed through `check` if given. */
  options(check = asIs) {
    return parseJson(this.optionsJson, 'handler options', this.signalName, check);
  }

  /** The tenant's settings, parsed and passed through `check` if given. */
  settings(check = asIs) {
    return parseJson(this.settingsJson, 'tenant settings', this.signalName, check);
  }

  /**
   * One setting by JSON pointer (RFC 6901, `/forum/auto_summaries`), or
   * undefined when it is absent or the settings are not JSON.
   */
  setting(pointer) {
    let value;
    try {
      value = JSON.parse(this.settingsJson);
    } catch {
      return undefined;
    }
    if (pointer === '') return value;
    if (!pointer.startsWith('/')) return undefined;
    for (const raw of pointer.slice(1).split('/')) {
      const token = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (Array.isArray(value)) {
        // Array indices are decimal without leading zeros, as the RFC says.
        if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
        value = value[token];
      } else if (value !== null && typeof value === 'object' && Object.hasOwn(value, token)) {
        value = value[token];
      } else {
        return undefined;
      }
      if (value === undefined) return undefined;
    }
    return value;
  }

  hasPackage(name) {
    return this.packages.includes(name);
  }
}
