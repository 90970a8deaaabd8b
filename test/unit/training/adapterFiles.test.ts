// PEFT adapter files (docs/reference/lora.md#saved-adapter-format): safetensors layout as the reference writer makes
// it, adapter_config.json as peft 0.12 writes it (json.dumps(indent=2, sort_keys=True)), round trips, and a clear error
// for each broken adapter.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import type { LoraTensor } from '../../../src-main/addon/addonTypes'
import {
  baseModelName,
  decodeSafetensors,
  encodeSafetensors,
  halfToFloat,
  loadAdapter,
  loraKey,
  parseLoraKey,
  pyFloatRepr,
  pythonJsonDumps,
  saveAdapter,
  type AdapterSettings,
} from '../../../src-main/services/training/adapterFiles'
import { tempDir } from '../../helpers/modelFixtures'

const SETTINGS: AdapterSettings = {
  r: 4,
  alpha: 16,
  dropout: 0.1,
  targets: ['q_proj', 'v_proj'],
  baseModel: 'MediaTek-Research/Breeze-7B-Instruct-v0_1',
}

/** A full adapter for `layers` layers, hidden 8, kv dim 4, with recognisable values. */
function makeTensors(layers = 2, r = 4, targets: AdapterSettings['targets'] = ['q_proj', 'v_proj']): LoraTensor[] {
  const out: LoraTensor[] = []
  let v = 0
  for (let l = 0; l < layers; l++) {
    for (const t of targets) {
      const outDim = t === 'v_proj' || t === 'k_proj' ? 4 : 8
      for (const [which, shape] of [
        ['A', [r, 8]],
        ['B', [outDim, r]],
      ] as const) {
        const data = Float32Array.from({ length: shape[0] * shape[1] }, () => (v++ % 17) / 16 - 0.5)
        out.push({ name: loraKey(l, t, which), shape: [...shape], data })
      }
    }
  }
  return out
}

/** The exact text peft 0.12 writes for SETTINGS (json.dumps(indent=2, sort_keys=True), no final newline). */
const PEFT_CONFIG_TEXT = `{
  "alpha_pattern": {},
  "auto_mapping": null,
  "base_model_name_or_path": "MediaTek-Research/Breeze-7B-Instruct-v0_1",
  "bias": "none",
  "fan_in_fan_out": false,
  "inference_mode": true,
  "init_lora_weights": true,
  "layer_replication": null,
  "layers_pattern": null,
  "layers_to_transform": null,
  "loftq_config": {},
  "lora_alpha": 16,
  "lora_dropout": 0.1,
  "megatron_config": null,
  "megatron_core": "megatron.core",
  "modules_to_save": null,
  "peft_type": "LORA",
  "r": 4,
  "rank_pattern": {},
  "revision": null,
  "target_modules": [
    "q_proj",
    "v_proj"
  ],
  "task_type": "CAUSAL_LM",
  "use_dora": false,
  "use_rslora": false
}`

describe('PEFT key names', () => {
  it('puts q/k/v/o under self_attn and gate/up/down under mlp', () => {
    expect(loraKey(0, 'q_proj', 'A')).toBe('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')
    expect(loraKey(31, 'v_proj', 'B')).toBe('base_model.model.model.layers.31.self_attn.v_proj.lora_B.weight')
    expect(loraKey(2, 'down_proj', 'A')).toBe('base_model.model.model.layers.2.mlp.down_proj.lora_A.weight')
    expect(parseLoraKey('base_model.model.model.layers.7.mlp.gate_proj.lora_B.weight')).toEqual({
      layer: 7,
      target: 'gate_proj',
      which: 'B',
    })
    expect(parseLoraKey('base_model.model.model.layers.7.self_attn.gate_proj.lora_B.weight')).toBeNull()
    expect(parseLoraKey('base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight')).toBeNull()
  })
})

describe('safetensors', () => {
  it('writes the reference layout: u64 header length, __metadata__ first, names sorted, padded to 8, data contiguous', () => {
    const tensors = [
      { name: 'b', shape: [2], data: Float32Array.of(3, 4) },
      { name: 'a', shape: [1, 3], data: Float32Array.of(1, 2, 5) },
    ]
    const bytes = Buffer.from(encodeSafetensors(tensors))
    const n = Number(bytes.readBigUInt64LE(0))
    expect(n % 8).toBe(0)
    const header = bytes.subarray(8, 8 + n).toString('utf8')
    expect(header.trimEnd()).toBe(
      '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}',
    )
    expect(bytes.length).toBe(8 + n + 20)
    expect(
      Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + n, bytes.byteOffset + 8 + n + 20))),
    ).toEqual([1, 2, 5, 3, 4])
    const back = decodeSafetensors(bytes, 'x.safetensors')
    expect(back.metadata).toEqual({ format: 'pt' })
    expect(back.tensors.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([
      ['a', [1, 3], [1, 2, 5]],
      ['b', [2], [3, 4]],
    ])
  })

  it('writes BF16 with round-to-nearest-even, after the F32 tensors (the reference writer sorts by dtype first)', () => {
    const bytes = Buffer.from(
      encodeSafetensors([
        { name: 'a', shape: [4], data: Float32Array.of(1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5), dtype: 'BF16' },
        { name: 'z', shape: [1], data: Float32Array.of(7) },
      ]),
    )
    const n = Number(bytes.readBigUInt64LE(0))
    expect(
      bytes
        .subarray(8, 8 + n)
        .toString('utf8')
        .trimEnd(),
    ).toBe(
      '{"__metadata__":{"format":"pt"},"z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"BF16","shape":[4],"data_offsets":[4,12]}}',
    )
    const t = decodeSafetensors(bytes, 'b.safetensors').tensors
    // 1 + 2^-8 is a tie -> even (1); 1 + 3*2^-8 is a tie -> even (1 + 2^-6... i.e. 1.015625).
    expect(Array.from(t.find((x) => x.name === 'a')!.data)).toEqual([1, 1, 1.015625, -2.5])
  })

  it('reads F16 and BF16 as F32', () => {
    const header = JSON.stringify({
      h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [6, 10] },
    })
    const padded = header.padEnd(Math.ceil(header.length / 8) * 8, ' ')
    const data = Buffer.alloc(10)
    data.writeUInt16LE(0x3c00, 0) // 1.0
    data.writeUInt16LE(0xc000, 2) // -2.0
    data.writeUInt16LE(0x0001, 4) // smallest subnormal 2^-24
    data.writeUInt16LE(0x3fc0, 6) // bf16 1.5
    data.writeUInt16LE(0xc2f6, 8) // bf16 -123
    const len = Buffer.alloc(8)
    len.writeBigUInt64LE(BigInt(padded.length))
    const t = decodeSafetensors(Buffer.concat([len, Buffer.from(padded), data]), 'h.safetensors').tensors
    expect(Array.from(t.find((x) => x.name === 'h')!.data)).toEqual([1, -2, 2 ** -24])
    expect(Array.from(t.find((x) => x.name === 'b')!.data)).toEqual([1.5, -123])
    expect(halfToFloat(0x7c00)).toBe(Infinity)
    expect(halfToFloat(0x7bff)).toBe(65504)
  })

  it('names the file and the tensor when something is broken', () => {
    const good = Buffer.from(encodeSafetensors([{ name: 'w', shape: [4], data: Float32Array.of(1, 2, 3, 4) }]))
    expect(() => decodeSafetensors(good.subarray(0, 4), 'f.st')).toThrow(/f\.st: file is 4 bytes/)
    const longHeader = Buffer.from(good)
    longHeader.writeBigUInt64LE(BigInt(good.length), 0)
    expect(() => decodeSafetensors(longHeader, 'f.st')).toThrow(/header length .* runs past the end/)
    expect(() => decodeSafetensors(good.subarray(0, good.length - 4), 'f.st')).toThrow(
      /tensor w: data \[0, 16\) lies outside/,
    )
    const badDtype = Buffer.from(good.toString('latin1').replace('"F32"', '"I32"'), 'latin1')
    expect(() => decodeSafetensors(badDtype, 'f.st')).toThrow(/tensor w: dtype "I32" is not supported/)
    const badShape = Buffer.from(good.toString('latin1').replace('"shape":[4]', '"shape":[5]'), 'latin1')
    expect(() => decodeSafetensors(badShape, 'f.st')).toThrow(/tensor w: shape \[5\] F32 needs 20 bytes/)
    const badJson = Buffer.from(good.toString('latin1').replace('{"__metadata__"', '["__metadata__"'), 'latin1')
    expect(() => decodeSafetensors(badJson, 'f.st')).toThrow(/header is not valid JSON/)
  })
})

describe('adapter_config.json', () => {
  it('is byte for byte what peft 0.12 writes', () => {
    const dir = path.join(tempDir(), 'adapter')
    saveAdapter(dir, makeTensors(), SETTINGS)
    expect(readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')).toBe(PEFT_CONFIG_TEXT)
  })

  it('formats like Python json.dumps: float repr, ensure_ascii, nested indentation', () => {
    expect(pyFloatRepr(0)).toBe('0.0')
    expect(pyFloatRepr(0.1)).toBe('0.1')
    expect(pyFloatRepr(1e-5)).toBe('1e-05')
    expect(pyFloatRepr(1.5e-7)).toBe('1.5e-07')
    expect(pyFloatRepr(2.5)).toBe('2.5')
    expect(pyFloatRepr(1e16)).toBe('1e+16')
    expect(pyFloatRepr(123456789012345.0)).toBe('123456789012345.0')
    expect(pythonJsonDumps({ b: [1, { d: 'é', c: [] }], a: null })).toBe(
      '{\n  "a": null,\n  "b": [\n    1,\n    {\n      "c": [],\n      "d": "\\u00e9"\n    }\n  ]\n}',
    )
  })

  it('writes lora_dropout 0 as 0.0 and a fractional alpha as a float', () => {
    const dir = path.join(tempDir(), 'adapter')
    saveAdapter(dir, makeTensors(), { ...SETTINGS, dropout: 0, alpha: 8.5 })
    const text = readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')
    expect(text).toContain('"lora_dropout": 0.0,')
    expect(text).toContain('"lora_alpha": 8.5,')
  })
})

describe('saveAdapter / loadAdapter', () => {
  it('round-trips tensors, settings and extra files, leaving no temp folder behind', () => {
    const parent = tempDir()
    const dir = path.join(parent, 'adapter')
    const tensors = makeTensors(3)
    saveAdapter(dir, tensors, SETTINGS, {
      extraJson: { 'training_state.json': { status: 'cancelled', global_step: 2 } },
    })
    expect(readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors', 'training_state.json'])
    expect(readdirSync(parent)).toEqual(['adapter'])
    const a = loadAdapter(dir)
    expect(a.settings).toEqual(SETTINGS)
    expect(a.layers).toBe(3)
    expect(a.config.peft_type).toBe('LORA')
    const byName = new Map(a.tensors.map((t) => [t.name, t]))
    for (const t of tensors) {
      expect(byName.get(t.name)!.shape).toEqual(t.shape)
      expect(Array.from(byName.get(t.name)!.data)).toEqual(Array.from(t.data))
    }
    // Header keys are the PEFT names, sorted, with format pt.
    const bytes = readFileSync(path.join(dir, 'adapter_model.safetensors'))
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'))
    expect(Object.keys(header)).toEqual(['__metadata__', ...tensors.map((t) => t.name).sort()])
    expect(header.__metadata__).toEqual({ format: 'pt' })
    expect(JSON.parse(readFileSync(path.join(dir, 'training_state.json'), 'utf8')).global_step).toBe(2)
  })

  it('replaces an existing adapter folder as a whole', () => {
    const parent = tempDir()
    const dir = path.join(parent, 'adapter')
    saveAdapter(dir, makeTensors(2), SETTINGS, { extraJson: { 'old.json': {} } })
    saveAdapter(dir, makeTensors(1, 2, ['q_proj']), { ...SETTINGS, r: 2, targets: ['q_proj'] })
    expect(existsSync(path.join(dir, 'old.json'))).toBe(false)
    expect(loadAdapter(dir)).toMatchObject({ layers: 1, settings: { r: 2, targets: ['q_proj'] } })
    expect(readdirSync(parent)).toEqual(['adapter'])
  })

  it('refuses to save tensors that do not match the settings', () => {
    const dir = path.join(tempDir(), 'adapter')
    expect(() => saveAdapter(dir, makeTensors(2, 8), SETTINGS)).toThrow(/implies rank 8, but r is 4/)
    expect(existsSync(dir)).toBe(false)
  })

  it('reads use_rslora as the equivalent alpha (alpha * sqrt(r))', () => {
    const dir = path.join(tempDir(), 'adapter')
    saveAdapter(dir, makeTensors(), SETTINGS)
    const cfgFile = path.join(dir, 'adapter_config.json')
    writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(readFileSync(cfgFile, 'utf8')), use_rslora: true }))
    expect(loadAdapter(dir).settings.alpha).toBe(32)
  })
})

describe('broken adapters: one message naming the file, field or tensor', () => {
  function adapterWith(edit: (dir: string) => void): string {
    const dir = path.join(tempDir(), 'adapter')
    saveAdapter(dir, makeTensors(), SETTINGS)
    edit(dir)
    return dir
  }
  const editConfig = (dir: string, f: (c: Record<string, unknown>) => void) => {
    const file = path.join(dir, 'adapter_config.json')
    const c = JSON.parse(readFileSync(file, 'utf8'))
    f(c)
    writeFileSync(file, JSON.stringify(c))
  }
  const rewriteWeights = (dir: string, tensors: LoraTensor[]) =>
    writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(tensors))

  it.each([
    ['a missing folder', (d: string) => d + '-nope', /adapter directory .*-nope does not exist/],
    ['no adapter_config.json', (d: string) => (rmFile(d, 'adapter_config.json'), d), /has no adapter_config\.json/],
    [
      'config not JSON',
      (d: string) => (writeFileSync(path.join(d, 'adapter_config.json'), '{oops'), d),
      /adapter_config\.json: not valid JSON/,
    ],
    [
      'peft_type IA3',
      (d: string) => (editConfig(d, (c) => (c.peft_type = 'IA3')), d),
      /field "peft_type" is "IA3"; only LORA/,
    ],
    ['r missing', (d: string) => (editConfig(d, (c) => delete c.r), d), /field "r" must be a positive integer/],
    [
      'regex target_modules',
      (d: string) => (editConfig(d, (c) => (c.target_modules = '.*proj')), d),
      /field "target_modules" is the pattern/,
    ],
    [
      'unknown target',
      (d: string) => (editConfig(d, (c) => (c.target_modules = ['q_proj', 'lm_head'])), d),
      /target_modules" names "lm_head"/,
    ],
    ['DoRA', (d: string) => (editConfig(d, (c) => (c.use_dora = true)), d), /field "use_dora" is true/],
    [
      'r differs from tensors',
      (d: string) => (editConfig(d, (c) => (c.r = 8)), d),
      /lora_A\.weight: shape \[4,8\] implies rank 4, but r is 8/,
    ],
    [
      'targets differ from tensors',
      (d: string) => (editConfig(d, (c) => (c.target_modules = ['q_proj'])), d),
      /v_proj\.lora_A\.weight: adapts v_proj, which target_modules \[q_proj\] does not list/,
    ],
    [
      'a target without tensors',
      (d: string) => (editConfig(d, (c) => (c.target_modules = ['q_proj', 'v_proj', 'k_proj'])), d),
      /target_modules lists k_proj but no tensor adapts it/,
    ],
    [
      'no weights file',
      (d: string) => (rmFile(d, 'adapter_model.safetensors'), d),
      /has no adapter_model\.safetensors/,
    ],
    [
      'a pickle instead',
      (d: string) => (rmFile(d, 'adapter_model.safetensors'), writeFileSync(path.join(d, 'adapter_model.bin'), 'x'), d),
      /adapter_model\.bin \(a pickle\)/,
    ],
    [
      'truncated weights',
      (d: string) => (truncate(path.join(d, 'adapter_model.safetensors'), 100), d),
      /adapter_model\.safetensors: tensor .* lies outside/,
    ],
    [
      'a missing B',
      (d: string) => (
        rewriteWeights(
          d,
          makeTensors().filter((t) => t.name !== loraKey(1, 'q_proj', 'B')),
        ),
        d
      ),
      /layers\.1\.self_attn\.q_proj\.lora_B\.weight is missing/,
    ],
    [
      'a foreign tensor',
      (d: string) => (
        rewriteWeights(d, [...makeTensors(), { name: 'lm_head.weight', shape: [1], data: Float32Array.of(0) }]),
        d
      ),
      /tensor lm_head\.weight: is not a LoRA weight/,
    ],
  ])('%s', (_what, make, message) => {
    const dir = make(adapterWith(() => {}))
    let err: unknown
    try {
      loadAdapter(dir)
    } catch (e) {
      err = e
    }
    expect(err, 'loadAdapter should throw').toBeDefined()
    expect((err as { code: string }).code).toBe('E_BAD_INPUT')
    expect((err as Error).message).toMatch(message)
    expect((err as Error).message).not.toContain('\n')
  })
})

describe('baseModelName', () => {
  it('prefers config.json _name_or_path, then a hub cache id, then the folder name', () => {
    const root = tempDir()
    const named = path.join(root, 'local-copy')
    mkdirSync(named)
    writeFileSync(
      path.join(named, 'config.json'),
      JSON.stringify({ _name_or_path: 'MediaTek-Research/Breeze-7B-Instruct-v0_1' }),
    )
    expect(baseModelName(named)).toBe('MediaTek-Research/Breeze-7B-Instruct-v0_1')
    const snap = path.join(root, 'models--Qwen--Qwen2-0.5B', 'snapshots', 'abc123')
    mkdirSync(snap, { recursive: true })
    writeFileSync(path.join(snap, 'config.json'), '{}')
    expect(baseModelName(snap)).toBe('Qwen/Qwen2-0.5B')
    const plain = path.join(root, 'stories260K')
    mkdirSync(plain)
    expect(baseModelName(plain)).toBe('stories260K')
  })
})

function rmFile(dir: string, name: string): void {
  rmSync(path.join(dir, name))
}

function truncate(file: string, bytes: number): void {
  const b = readFileSync(file)
  writeFileSync(file, b.subarray(0, b.length - bytes))
}
