// Fuzz target for the resume checkpoint reader (src-main/services/training/checkpoint.ts readCheckpoint): the JSON
// state in the header of RUN_DIR/checkpoint.safetensors (`--resume RUN_DIR` reads whatever folder it is given). The
// tensor data is covered by a sha256 in the header, so the harness writes valid tensors with a matching digest and
// fuzzes the state, which nothing checksums. A read checkpoint must hand the engine a training state whose every
// optimizer tensor has a known layout, integer step and size, and exactly the arrays that layout needs.
import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import {
  CHECKPOINT_FILE,
  CHECKPOINT_FORMAT,
  CHECKPOINT_VERSION,
  readCheckpoint,
  type Checkpoint,
} from '../../../src-main/services/training/checkpoint'
import { encodeRawSafetensors, type RawTensor } from '../../../src-main/services/training/safetensorsBytes'
import { ensure, readOrRefuse } from '../property'
import { text, type JsFuzzTarget } from '../jsTarget'

const floats = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer)

/** Tensors of a checkpoint holding one LoRA matrix, an fp32-AdamW tensor 'b' and an 8-bit tensor 'a'. */
const TENSORS: RawTensor[] = [
  {
    name: 'lora/base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight',
    dtype: 'F32',
    shape: [1, 2],
    bytes: floats(1, -2),
  },
  { name: 'optim/a/state1', dtype: 'U8', shape: [4], bytes: Uint8Array.of(1, 2, 3, 4) },
  { name: 'optim/a/state2', dtype: 'U8', shape: [4], bytes: Uint8Array.of(5, 6, 7, 8) },
  { name: 'optim/a/absmax1', dtype: 'F32', shape: [1], bytes: floats(0.5) },
  { name: 'optim/a/absmax2', dtype: 'F32', shape: [1], bytes: floats(0.25) },
  { name: 'optim/b/m', dtype: 'F32', shape: [2], bytes: floats(1, 2) },
  { name: 'optim/b/v', dtype: 'F32', shape: [2], bytes: floats(3, 4) },
]

const VALID_STATE = {
  global_step: 3,
  max_steps: 6,
  epoch: 0.5,
  data_position: { epoch: 0, micro_batch: 23, micro_batches_per_epoch: 48 },
  scheduler: { step: 3, next_lr: 0.0002 },
  optimizer: {
    kind: 'paged_adamw_8bit',
    tensors: [
      { name: 'a', layout: 'bnb8_blockwise', step: 3, numel: 4 },
      { name: 'b', layout: 'bnb32', step: 3, numel: 2 },
    ],
  },
  dropout_rng: '5489 1 2 3',
  adapter: { r: 1, alpha: 16, dropout: 0.1, targets: ['q_proj'], baseModel: 'tiny' },
  accumulators: { step_losses: [0.69, 0.68, 0.6], pairs_done: 24, train_seconds: 1.5 },
  data_fingerprint: 'f'.repeat(64),
  params: {},
  engine_version: '0.1.0',
  backend: 'cpu',
  saved: '2026-01-01T00:00:00.000Z',
}

const LAYOUT_FIELDS: Record<string, readonly string[]> = {
  adamw: ['m', 'v'],
  bnb32: ['m', 'v'],
  bnb8_blockwise: ['state1', 'state2', 'absmax1', 'absmax2'],
}

function checkCheckpoint(c: Checkpoint): void {
  ensure(
    Number.isInteger(c.state.global_step) && c.state.global_step >= 1,
    `a bad global_step was accepted: ${c.state.global_step}`,
  )
  ensure(typeof c.training.dropoutRng === 'string', 'the dropout generator state is not a string')
  for (const t of c.training.tensors) {
    const fields = LAYOUT_FIELDS[t.layout as string]
    ensure(fields !== undefined, `an optimizer tensor with an unknown layout was accepted: ${JSON.stringify(t.layout)}`)
    ensure(
      typeof t.name === 'string' &&
        Number.isInteger(t.step) &&
        t.step >= 0 &&
        Number.isInteger(t.numel) &&
        t.numel >= 0,
      `an optimizer tensor with name, step or numel of the wrong kind was accepted: ${JSON.stringify({ name: t.name, step: t.step, numel: t.numel })}`,
    )
    for (const f of fields!)
      ensure((t as unknown as Record<string, unknown>)[f] !== undefined, `an optimizer tensor lacks an array: ${f}`)
  }
}

export const resumeCheckpoint: JsFuzzTarget = {
  name: 'resume_checkpoint',
  file: "the JSON state in the header of a run directory's checkpoint.safetensors (tensor data valid)",
  kind: 'json',
  seeds: () => [text(JSON.stringify(VALID_STATE))],
  dictionary: [
    'global_step',
    'max_steps',
    'optimizer',
    'kind',
    'tensors',
    'name',
    'layout',
    'step',
    'numel',
    'adamw',
    'bnb32',
    'bnb8_blockwise',
    'paged_adamw_8bit',
    'none',
    'dropout_rng',
    'a',
    'b',
    'data_position',
    'accumulators',
    'params',
    'adapter',
  ],
  fragments: [
    { name: 'a', layout: 'bnb8_blockwise', step: 3, numel: 4 },
    { name: 'b', layout: 'adamw', step: 0, numel: 2 },
    { kind: 'adamw', tensors: [] },
  ],
  prepare() {},
  async run(input, dir) {
    const digest = createHash('sha256')
    for (const t of TENSORS) digest.update(t.bytes)
    const state = new TextDecoder().decode(input)
    const file = encodeRawSafetensors(TENSORS, {
      format: CHECKPOINT_FORMAT,
      version: String(CHECKPOINT_VERSION),
      state,
      data_sha256: digest.digest('hex'),
    })
    writeFileSync(path.join(dir, CHECKPOINT_FILE), file)
    await readOrRefuse(() => readCheckpoint(dir)!, checkCheckpoint, {
      codes: ['E_BAD_INPUT'],
      names: [path.join(dir, CHECKPOINT_FILE)],
    })
  },
}
