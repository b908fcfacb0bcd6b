#!/usr/bin/env node
// The `hallflow-actor` header for a message to a hallflow workflow, signed with Ed25519 using only
// node:crypto: the Node.js twin of `python starter.py sign` (contract/assertion.py says what it is).
//
//   node sign-assertion.mjs --key var/keys/hallflow-cli.key \
//       --actor officer-li --workflow-id case-HALL-0001 --message review --input "$J"
//   node sign-assertion.mjs --seed BASE64 --key-id hallflow-cli/2026-11-30 ...   # the key inline
//
// prints `hallflow-actor={...}` for the temporal CLI's --headers. Import it to sign in a program:
// `signAssertion({...})` returns the assertion object (README.md: a client interceptor).

import { createHash, createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

export const HEADER = 'hallflow-actor';
export const MAX_LIFETIME_SECONDS = 300;
// PKCS#8 DER of an Ed25519 private key, up to its 32-byte seed (RFC 8410): node:crypto takes
// a raw seed only wrapped this way.
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** `2026-11-30T12:00:00Z`: RFC 3339 UTC, whole seconds. */
export function instant(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Lowercase hex SHA-256 of the payload data as sent (b"" for a message without an argument). */
export function payloadDigest(data) {
  return createHash('sha256').update(data).digest('hex');
}

function oneLine(name, value) {
  // Each field is one line of the signed text: a line break would make it ambiguous.
  if (typeof value !== 'string' || value === '' || /[\u0000-\u001f\u007f]/.test(value) || !value.isWellFormed()) {
    throw new Error(`${name}: a non-empty string without control characters or line breaks`);
  }
  return value;
}

/**
 * The signed assertion that `actor` sends `message` with `payload` (the argument's bytes exactly
 * as sent) to `workflowId`, valid from `now` for `lifetimeSeconds` (at most 300).
 */
export function signAssertion({ seed, keyId, actor, workflowId, message, payload = Buffer.alloc(0), now = new Date(), lifetimeSeconds = MAX_LIFETIME_SECONDS }) {
  const seedBytes = Buffer.from(seed, 'base64');
  if (seedBytes.length !== 32 || seedBytes.toString('base64') !== seed) {
    throw new Error('seed: base64 of a 32-byte Ed25519 seed');
  }
  if (!Number.isInteger(lifetimeSeconds) || lifetimeSeconds < 1 || lifetimeSeconds > MAX_LIFETIME_SECONDS) {
    throw new Error(`lifetime: 1 to ${MAX_LIFETIME_SECONDS} seconds`);
  }
  const issued = Math.floor(now.getTime() / 1000) * 1000;
  const fields = {
    actor: oneLine('actor', actor),
    workflow_id: oneLine('workflow-id', workflowId),
    message: oneLine('message', message),
    payload_sha256: payloadDigest(payload),
    issued_at: instant(new Date(issued)),
    expires_at: instant(new Date(issued + lifetimeSeconds * 1000)),
    key_id: oneLine('key-id', keyId),
    alg: 'ed25519',
  };
  const text = 'hallflow-actor/v1\n' + Object.values(fields).join('\n');
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seedBytes]), format: 'der', type: 'pkcs8' });
  const signature = sign(null, Buffer.from(text, 'utf8'), key).toString('base64');
  return { v: 1, ...fields, signature };
}

/** A private key file as `starter.py admin keys new` writes it: `name = "value"` lines only. */
export function readKeyFile(path) {
  const key = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*([a-z_]+)\s*=\s*(".*")\s*$/.exec(line);
    if (m) key[m[1]] = JSON.parse(m[2]); // the file's strings are written JSON-compatible
  }
  if (key.alg !== 'ed25519') throw new Error(`${path}: this example signs with ed25519 keys only, not ${key.alg}`);
  return { seed: key.private, keyId: key.id };
}

function main() {
  const { values: o } = parseArgs({
    options: {
      key: { type: 'string' },
      seed: { type: 'string' },
      'key-id': { type: 'string' },
      actor: { type: 'string' },
      'workflow-id': { type: 'string' },
      message: { type: 'string' },
      input: { type: 'string', short: 'i' },
      'input-file': { type: 'string' },
      lifetime: { type: 'string', default: String(MAX_LIFETIME_SECONDS) },
      now: { type: 'string' }, // for tests: the signing instant, RFC 3339
    },
  });
  if (!o.key === !o.seed) throw new Error('give --key FILE, or --seed BASE64 with --key-id ID');
  if (o.input !== undefined && o['input-file'] !== undefined) throw new Error('give --input or --input-file, not both');
  const { seed, keyId } = o.key ? readKeyFile(o.key) : { seed: o.seed, keyId: o['key-id'] };
  // The temporal CLI sends --input as its UTF-8 bytes and --input-file as the file's bytes.
  const payload = o.input !== undefined ? Buffer.from(o.input, 'utf8') : o['input-file'] ? readFileSync(o['input-file']) : Buffer.alloc(0);
  const now = o.now ? new Date(o.now) : new Date();
  if (Number.isNaN(now.getTime())) throw new Error('now: an RFC 3339 instant');
  const assertion = signAssertion({
    seed, keyId, actor: o.actor, workflowId: o['workflow-id'], message: o.message, payload, now,
    lifetimeSeconds: Number(o.lifetime),
  });
  process.stdout.write(`${HEADER}=${JSON.stringify(assertion)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
}
