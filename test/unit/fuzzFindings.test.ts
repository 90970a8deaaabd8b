// One test per kind of defect the fuzzers found in the TypeScript readers (docs/fuzzing.md), with the message
// each now gives; the minimized inputs themselves are replayed by fuzzRegressions.test.ts.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadPreferenceData } from '../../src-main/services/data/preferenceFile'
import { loadPromptsFile } from '../../src-main/services/data/promptsFile'
import { StudioError } from '../../src-main/services/errors'
import { listCachedModels } from '../../src-main/services/models/hfCache'
import { inspectModel } from '../../src-main/services/models/inspectModel'
import { decodeCheckpoint, encodeCheckpoint, type Checkpoint } from '../../src-main/services/training/checkpoint'
import {
  encodeSafetensors,
  loadAdapter,
  loraKey,
  peftConfigObject,
  pythonJsonDumps,
} from '../../src-main/services/training/adapterFiles'
import { renderMessages } from '../../src-main/services/tokenizer/chatTemplate'
import { TextTokenizer } from '../../src-main/services/tokenizer/textTokenizer'
import { repoRoot } from '../helpers/sharedPath'

const tmp = () => mkdtempSync(path.join(os.tmpdir(), 'dpo-fuzz-found-'))

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<StudioError> {
  const e = await (typeof p === 'function' ? Promise.resolve().then(p) : p).then(
    () => null,
    (err: unknown) => err,
  )
  expect(e).toBeInstanceOf(StudioError)
  return e as StudioError
}

function file(dir: string, name: string, content: string | Uint8Array): string {
  writeFileSync(path.join(dir, name), content)
  return path.join(dir, name)
}

describe('JSON syntax errors say where, in our words, without pasting the file', () => {
  it('a JSON-array dataset names line, column and row', async () => {
    const f = file(
      tmp(),
      'data.json',
      '[\n {"prompt": "a", "chosen": "b", "rejected": "c"},\n {"prompt": \u001b[31m}\n]',
    )
    const e = await refusal(loadPreferenceData(f))
    expect(e.message).toBe(`${f}: row 2: not valid JSON at line 3, column 13: unexpected character (expected a value)`)
    expect(e.details).toMatchObject({ row: 2, line: 3, column: 13 })
  })

  it('a JSONL line names its row and column', async () => {
    const f = file(tmp(), 'p.jsonl', '{"prompt": "a"}\n{"prompt": secret-text}\n')
    expect((await refusal(loadPromptsFile(f))).message).toBe(
      `${f}: row 2: not valid JSON at column 12: unexpected character (expected a value)`,
    )
  })

  it('tokenizer_config.json, adapter_config.json and the model panel do the same', async () => {
    const dir = tmp()
    file(dir, 'tokenizer.json', '{}')
    file(dir, 'tokenizer_config.json', '{"bos_token": "<s>",\n "eos_token": oops}')
    expect((await refusal(TextTokenizer.fromDir(dir))).message).toBe(
      `model directory ${dir}: tokenizer_config.json is not valid JSON at line 2, column 15: unexpected character (expected a value)`,
    )
    file(dir, 'adapter_config.json', '{"r": 8,}')
    expect((await refusal(() => loadAdapter(dir))).message).toMatch(
      /adapter_config\.json: not valid JSON at line 1, column 9: expected a field name in double quotes/,
    )
    file(dir, 'config.json', '{"architectures": [LlamaForCausalLM]}')
    expect((await refusal(inspectModel(dir))).message).toBe(
      `${path.join(dir, 'config.json')}: not valid JSON at line 1, column 20: unexpected character (expected a value)`,
    )
  })
})

describe('values from files are quoted, escaped and cut in messages', () => {
  it('a 5000-character id with an escape sequence becomes a short, one-line message', async () => {
    const g = file(tmp(), 'q.jsonl', `${JSON.stringify({ id: `\u001b[2J${'y'.repeat(5000)}`, prompt: 7 })}\n`)
    const e = await refusal(loadPromptsFile(g))
    expect(e.message).toBe(`${g}: row 1 (id "\\u001b[2J${'y'.repeat(56)}…"): field "prompt" must be a non-empty string`)
  })

  it("invalid UTF-8 names the field whose value holds it, that field name escaped and cut (a key is the file's text)", async () => {
    const bytes = (head: string) => Buffer.concat([Buffer.from(head), Buffer.from([0xff]), Buffer.from('"}\n')])
    const g = file(tmp(), 'u.jsonl', bytes('{"\u007f\\u001b": "x') /* a raw DEL and an escaped ESC */)
    expect((await refusal(loadPromptsFile(g))).message).toBe(
      `${g}: row 1: field "\\u007f\\u001b": invalid UTF-8 at byte 14; save the file as UTF-8`,
    )
    const h = file(tmp(), 'v.jsonl', bytes(`{"${'k'.repeat(3000)}": "x`))
    const e = await refusal(loadPromptsFile(h))
    expect(e.message).toBe(
      `${h}: row 1: field "${'k'.repeat(200)}…": invalid UTF-8 at byte 3007; save the file as UTF-8`,
    )
    expect(e.details.field).toBe('k'.repeat(3000))
  })
})

describe('adapter_config.json', () => {
  it('a module listed twice in target_modules is adapted once, as PEFT does', () => {
    const dir = tmp()
    const tensors = ['q_proj', 'v_proj'].flatMap((t) => [
      { name: loraKey(0, t as 'q_proj', 'A'), shape: [2, 4], data: new Float32Array(8) },
      { name: loraKey(0, t as 'q_proj', 'B'), shape: [4, 2], data: new Float32Array(8) },
    ])
    file(dir, 'adapter_model.safetensors', encodeSafetensors(tensors))
    const cfg = {
      ...peftConfigObject({ r: 2, alpha: 16, dropout: 0, targets: ['q_proj', 'v_proj'], baseModel: 'm' }),
      target_modules: ['q_proj', 'v_proj', 'q_proj'],
    }
    file(dir, 'adapter_config.json', pythonJsonDumps(cfg))
    expect(loadAdapter(dir).settings.targets).toEqual(['q_proj', 'v_proj'])
  })
})

describe("the model panel's reader", () => {
  const demoConfig = path.join(repoRoot, 'resources', 'demo-model', 'config.json')
  const modelDir = (config: string) => {
    const dir = tmp()
    file(dir, 'config.json', config)
    file(
      dir,
      'model.safetensors',
      encodeSafetensors([{ name: 'model.norm.weight', shape: [4], data: new Float32Array(4) }]),
    )
    return dir
  }

  it('refuses a config.json that is not an object instead of throwing a TypeError', async () => {
    const dir = modelDir('null')
    expect((await refusal(inspectModel(dir))).message).toBe(`${path.join(dir, 'config.json')}: expected a JSON object`)
  })

  it('shows counts that are not non-negative integers as 0, and a non-string architecture as unknown', async () => {
    const m = await inspectModel(
      modelDir('{"architectures": [{}], "hidden_size": "64", "num_hidden_layers": -2, "vocab_size": 1e400}'),
    )
    expect(m).toMatchObject({ architecture: 'unknown', hidden: 0, layers: 0, vocab: 0, params: 4 })
  })

  it('refuses a malformed safetensors header or tensor entry, naming the file and tensor', async () => {
    const dir = modelDir(readFileSync(demoConfig, 'utf8'))
    const bad = (header: string) => {
      const json = Buffer.from(header)
      const len = Buffer.alloc(8)
      len.writeBigUInt64LE(BigInt(json.length))
      file(dir, 'model.safetensors', Buffer.concat([len, json]))
    }
    const st = path.join(dir, 'model.safetensors')
    bad('{"w": {"dtype": "F32", "shape": "4"}}')
    expect((await refusal(inspectModel(dir))).message).toBe(`${st}: tensor w: expected a dtype and a shape of sizes`)
    bad('{"w": {"dtype": "F32", "shape": [1e10, 1e10]}}')
    expect((await refusal(inspectModel(dir))).message).toBe(
      `${st}: tensor w: shape [10000000000, 10000000000] is larger than any file`,
    )
    bad('{"w": [}')
    expect((await refusal(inspectModel(dir))).message).toMatch(
      /the safetensors header is not valid JSON at line 1, column 8/,
    )
  })

  it('refuses an index whose shard names a file outside the model folder', async () => {
    const dir = modelDir(readFileSync(demoConfig, 'utf8'))
    mkdirSync(path.join(dir, 'sub'))
    file(dir, 'model.safetensors.index.json', '{"weight_map": {"x": "../secret.safetensors"}}')
    expect((await refusal(inspectModel(dir))).message).toMatch(
      /weight_map must map tensor names to shard file names of this folder \(found "\.\.\/secret\.safetensors"\)/,
    )
  })
})

describe('chat templates', () => {
  const host = (template: string) => ({ chatTemplateSource: template, bosToken: '<s>', eosToken: '</s>' })
  it('refuse a range() over the Jinja2 sandbox limit instead of building a billion-element list', () => {
    const t0 = Date.now()
    expect(() => renderMessages(host('{% for i in range(1000000000) %}x{% endfor %}'), [])).toThrow(
      'range() of 1000000000 items: the sandbox allows at most 100000',
    )
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(
      renderMessages(
        host('{% for i in range(3) %}{{ i }}{% endfor %}|{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}'),
        [],
      ),
    ).toBe('012|531')
    expect(renderMessages(host("{% set d = {'range': 'r'} %}{{ d.range }}"), [])).toBe('r') // a property named range is not the function
  })
})

describe('the Hugging Face cache listing', () => {
  it('lists the good snapshots when another one has a malformed or non-object config.json', async () => {
    const hub = tmp()
    const snapshot = (repo: string, config: string) => {
      const dir = path.join(hub, `models--${repo}`, 'snapshots', 'r1')
      mkdirSync(dir, { recursive: true })
      file(dir, 'config.json', config)
    }
    snapshot('org--good', '{"architectures": ["LlamaForCausalLM"]}')
    snapshot('org--torn', '{"architectures": ["Llama')
    snapshot('org--null', 'null')
    snapshot('org--odd', '{"architectures": "LlamaForCausalLM"}')
    const models = await listCachedModels(hub)
    expect(models.map((m) => [m.repoId, m.architecture])).toEqual([
      ['org/good', 'LlamaForCausalLM'],
      ['org/odd', null],
    ])
  })
})

describe('resume checkpoints', () => {
  // The header is not under the data checksum, so a checkpoint can carry a well-formed file with a broken state.
  const training: Checkpoint['training'] = {
    optimizer: 'adamw',
    dropoutRng: '1 2',
    tensors: [{ name: 'b', layout: 'adamw', step: 1, numel: 1, m: Float32Array.of(1), v: Float32Array.of(2) }],
  }
  const withState = (state: unknown) => encodeCheckpoint({ lora: [], training, state: state as Checkpoint['state'] })
  it('refuse optimizer tensor entries that are not {name, layout, step, numel}, and a missing dropout state', () => {
    const ok = {
      global_step: 1,
      optimizer: { kind: 'adamw', tensors: [{ name: 'b', layout: 'adamw', step: 1, numel: 1 }] },
      dropout_rng: '1 2',
    }
    expect(decodeCheckpoint(withState(ok), 'c.safetensors').training.tensors[0]!.m).toEqual(Float32Array.of(1))
    for (const entry of [
      null,
      { name: 'b', layout: 'sgd', step: 1, numel: 1 },
      { name: 'b', layout: 'adamw', step: '1', numel: 1 },
    ]) {
      expect(() =>
        decodeCheckpoint(withState({ ...ok, optimizer: { kind: 'adamw', tensors: [entry] } }), 'c.safetensors'),
      ).toThrow(
        /^c\.safetensors: the state in its header has an optimizer tensor that is not \{name, layout, step, numel\}: /,
      )
    }
    expect(() => decodeCheckpoint(withState({ ...ok, dropout_rng: 5 }), 'c.safetensors')).toThrow(
      'lacks the dropout generator state',
    )
  })
})
