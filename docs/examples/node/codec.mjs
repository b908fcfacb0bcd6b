#!/usr/bin/env node
// hallflow's payload codec with node:crypto alone: the Node.js twin of security/codec.py, so a
// Node.js system puts its payloads into Temporal encrypted, and reads hallflow's answers.
//
//   node codec.mjs encode --keys var/keys/data.toml < payloads.json
//   node codec.mjs decode --keys var/keys/data.toml < payloads.json
//
// read and print `{"payloads": [...]}`, Temporal Payloads as protobuf JSON (what the codec server's
// /encode and /decode take). Import it in a program: `new DataCodec(loadDataKeys())` is a payload
// codec for @temporalio/client's `dataConverter.payloadCodecs` (README.md).
//
// An encrypted payload: metadata `encoding` = binary/encrypted, `encryption-key-id`,
// `encryption-cipher` (aes-256-gcm or sm4-gcm); data = 12-byte nonce || ciphertext || 16-byte GCM
// tag of the serialized temporal.api.common.v1.Payload, with the key id's UTF-8 as associated data.

import { createCipheriv, createDecipheriv, getCiphers, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

export const ENCRYPTED = 'binary/encrypted';
export const KEY_ID = 'encryption-key-id';
export const CIPHER = 'encryption-cipher';
const NONCE = 12;
const TAG = 16;
const SECRET_BYTES = { 'aes-256-gcm': 32, 'sm4-gcm': 16 };

/** A payload this process cannot open: a key it does not hold, or data changed since it was sealed. */
export class Undecryptable extends Error {}

function strictBase64(text, size, what) {
  const raw = Buffer.from(typeof text === 'string' ? text : '', 'base64');
  if (raw.toString('base64') !== text || raw.length !== size) {
    throw new Error(`${what}: base64 of ${size} bytes`);
  }
  return raw;
}

/**
 * The data keys file (security/data_keys.py writes it): `current = "id"`, `lookup = "..."`, and a
 * `[keys."id"]` table per key with `cipher` and `secret`. Only that TOML, not TOML at large.
 */
export function parseDataKeys(text, source) {
  const top = {};
  const keys = {};
  let table = top;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${source}:${index + 1}`;
    const header = /^\[keys\.(?:"([^"]+)"|([A-Za-z0-9._-]+))\]\s*(?:#.*)?$/.exec(line);
    if (header) {
      const id = header[1] ?? header[2];
      if (id in keys) throw new Error(`${where}: key ${id} twice`);
      table = keys[id] = {};
      return;
    }
    const pair = /^([a-z_]+)\s*=\s*("(?:[^"\\]|\\.)*")\s*(?:#.*)?$/.exec(line);
    if (!pair) throw new Error(`${where}: expected name = "value" or [keys."<id>"]`);
    table[pair[1]] = JSON.parse(pair[2]); // a TOML basic string without TOML-only escapes is JSON
  });
  if (typeof top.current !== 'string' || !(top.current in keys)) {
    throw new Error(`${source}: current: ${JSON.stringify(top.current)} is not under [keys] (listed: ${Object.keys(keys).join(', ')})`);
  }
  const checked = {};
  for (const [id, key] of Object.entries(keys)) {
    if (!(key.cipher in SECRET_BYTES)) throw new Error(`${source}: keys.${id}.cipher: aes-256-gcm or sm4-gcm, not ${key.cipher}`);
    checked[id] = { cipher: key.cipher, secret: strictBase64(key.secret, SECRET_BYTES[key.cipher], `${source}: keys.${id}.secret`) };
  }
  return { current: top.current, keys: checked };
}

/**
 * The data keys in `file`; without one, as hallflow finds them: HALLFLOW_DATA_KEYS (the TOML
 * itself), else the file HALLFLOW_DATA_KEYS_FILE names, else var/keys/data.toml (`make keys`).
 */
export function loadDataKeys(file) {
  if (!file && process.env.HALLFLOW_DATA_KEYS) return parseDataKeys(process.env.HALLFLOW_DATA_KEYS, 'HALLFLOW_DATA_KEYS');
  const path = file || process.env.HALLFLOW_DATA_KEYS_FILE || 'var/keys/data.toml';
  return parseDataKeys(readFileSync(path, 'utf8'), path);
}

// --- temporal.api.common.v1.Payload: map<string, bytes> metadata = 1; bytes data = 2 ---------------

function varint(n) {
  const out = [];
  for (; n > 127; n = Math.floor(n / 128)) out.push((n % 128) | 128);
  out.push(n);
  return Buffer.from(out);
}

function lengthDelimited(field, bytes) {
  return Buffer.concat([varint(field * 8 + 2), varint(bytes.length), bytes]);
}

/** A payload's protobuf bytes. */
export function serializePayload({ metadata, data }) {
  const parts = [];
  for (const [name, value] of Object.entries(metadata ?? {})) {
    parts.push(lengthDelimited(1, Buffer.concat([lengthDelimited(1, Buffer.from(name, 'utf8')), lengthDelimited(2, Buffer.from(value))])));
  }
  if (data?.length) parts.push(lengthDelimited(2, Buffer.from(data)));
  return Buffer.concat(parts);
}

function* fields(bytes) {
  let at = 0;
  const next = () => {
    let value = 0;
    for (let scale = 1; ; scale *= 128) {
      if (at >= bytes.length || scale > 2 ** 49) throw new Error('not a Payload: a broken varint');
      const byte = bytes[at++];
      value += (byte & 127) * scale;
      if (byte < 128) return value;
    }
  };
  while (at < bytes.length) {
    const tag = next();
    const [field, wire] = [Math.floor(tag / 8), tag % 8];
    if (wire === 2) {
      const size = next();
      if (at + size > bytes.length) throw new Error('not a Payload: a field runs past the end');
      yield [field, bytes.subarray(at, (at += size))];
    } else if (wire === 0) next();
    else if (wire === 1 || wire === 5) at += wire === 1 ? 8 : 4;
    else throw new Error(`not a Payload: wire type ${wire}`);
  }
}

/** The payload in protobuf `bytes`. */
export function parsePayload(bytes) {
  const metadata = {};
  let data = Buffer.alloc(0);
  for (const [field, value] of fields(bytes)) {
    if (field === 1) {
      let name = '';
      let entry = Buffer.alloc(0);
      for (const [f, v] of fields(value)) {
        if (f === 1) name = v.toString('utf8');
        if (f === 2) entry = Buffer.from(v);
      }
      metadata[name] = entry;
    } else if (field === 2) data = Buffer.from(value);
    else if (field === 3) throw new Error('a payload kept in external storage: not supported here');
  }
  return { metadata, data };
}

// --- the codec -------------------------------------------------------------------------------

function aead(cipher) {
  if (!getCiphers().includes(cipher)) {
    // Node.js 20 bundles OpenSSL 3.0, which has SM4 but no SM4-GCM (README.md).
    throw new Error(`${cipher}: this Node.js's OpenSSL (${process.versions.openssl}) does not offer it`);
  }
  return cipher;
}

const text = (bytes) => (bytes == null ? '' : Buffer.from(bytes).toString('utf8'));

/** `payload` sealed with the current data key. */
export function encryptPayload(payload, keys) {
  const keyId = keys.current;
  const key = keys.keys[keyId];
  const nonce = randomBytes(NONCE);
  const cipher = createCipheriv(aead(key.cipher), key.secret, nonce, { authTagLength: TAG });
  cipher.setAAD(Buffer.from(keyId, 'utf8'));
  const body = Buffer.concat([cipher.update(serializePayload(payload)), cipher.final()]);
  return {
    metadata: { encoding: Buffer.from(ENCRYPTED), [KEY_ID]: Buffer.from(keyId, 'utf8'), [CIPHER]: Buffer.from(key.cipher) },
    data: Buffer.concat([nonce, body, cipher.getAuthTag()]),
  };
}

/** The payload sealed in `payload`; one that is not encrypted is returned as it is. */
export function decryptPayload(payload, keys) {
  if (text(payload.metadata?.encoding) !== ENCRYPTED) return payload;
  const keyId = text(payload.metadata[KEY_ID]);
  const key = keys.keys[keyId];
  if (!key) throw new Undecryptable(`payload is encrypted with key ${JSON.stringify(keyId)}, which this process does not hold`);
  const blob = Buffer.from(payload.data ?? []);
  if (blob.length < NONCE + TAG) throw new Undecryptable(`payload under key ${JSON.stringify(keyId)} is too short to be sealed`);
  const decipher = createDecipheriv(aead(key.cipher), key.secret, blob.subarray(0, NONCE), { authTagLength: TAG });
  decipher.setAAD(Buffer.from(keyId, 'utf8'));
  decipher.setAuthTag(blob.subarray(blob.length - TAG));
  let inner;
  try {
    inner = Buffer.concat([decipher.update(blob.subarray(NONCE, blob.length - TAG)), decipher.final()]);
  } catch {
    throw new Undecryptable(`payload under key ${JSON.stringify(keyId)} does not decrypt: wrong key, or the data was changed`);
  }
  return parsePayload(inner);
}

/** A PayloadCodec (@temporalio/common's interface): encode and decode lists of payloads. */
export class DataCodec {
  constructor(keys) {
    this.keys = keys;
  }

  async encode(payloads) {
    return payloads.map((p) => encryptPayload(p, this.keys));
  }

  async decode(payloads) {
    return payloads.map((p) => decryptPayload(p, this.keys));
  }
}

// --- Payloads as protobuf JSON: bytes as standard base64 ----------------------------------------

export function fromJson({ payloads = [] }) {
  return payloads.map(({ metadata = {}, data = '' }) => ({
    metadata: Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(data, 'base64'),
  }));
}

export function toJson(payloads) {
  return {
    payloads: payloads.map(({ metadata, data }) => ({
      metadata: Object.fromEntries(Object.entries(metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
      data: Buffer.from(data ?? []).toString('base64'),
    })),
  };
}

async function main() {
  const { values: o, positionals } = parseArgs({ options: { keys: { type: 'string' } }, allowPositionals: true });
  const [action] = positionals;
  if (positionals.length !== 1 || !['encode', 'decode'].includes(action)) {
    throw new Error('usage: codec.mjs encode|decode [--keys FILE] < {"payloads": [...]}');
  }
  const codec = new DataCodec(loadDataKeys(o.keys));
  const payloads = fromJson(JSON.parse(readFileSync(0, 'utf8')));
  process.stdout.write(`${JSON.stringify(toJson(await codec[action](payloads)))}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  });
}
