// Resume checkpoints (docs/resume.md): RUN_DIR/checkpoint.safetensors holds the LoRA A/B, every parameter's optimizer
// state (fp32 moments, or bnb's 8-bit codes with their block scales) and, in its metadata, the JSON state a run needs
// to continue bit for bit. One file, written to a temp name, flushed and renamed: it is either whole or absent.
import { createHash } from 'node:crypto'
import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import type { LoraTensor, OptimizerTensorState, TrainingState } from '../../addon/addonTypes'
import { StudioError, errorMessage } from '../errors'
import { parseJson } from '../data/jsonText'
import { bare, quoted } from '../messageText'
import type { TrainParams } from '../../../src-shared/params/trainParams'
import type { AdapterSettings } from './adapterFiles'
import { decodeRawSafetensors, rawSafetensorsHeader, type RawTensor } from './safetensorsBytes'

export const CHECKPOINT_FILE = 'checkpoint.safetensors'
export const CHECKPOINT_FORMAT = 'dpo-studio-checkpoint'
export const CHECKPOINT_VERSION = 1

/** The JSON half of a checkpoint (the file's __metadata__.state). Field by field in docs/resume.md. */
export interface CheckpointState {
  /** Optimizer steps finished; the run continues with step global_step + 1. */
  global_step: number
  max_steps: number
  /** state.epoch as logged after that step. */
  epoch: number
  /** Where the data order stands: the last micro-batch the step consumed (0-based epoch and dataloader index). */
  data_position: { epoch: number; micro_batch: number; micro_batches_per_epoch: number }
  /** The LR scheduler after global_step scheduler.step() calls, and the learning rate of the next step. */
  scheduler: { step: number; next_lr: number | null }
  /** The engine's optimizer state, without its arrays (those are tensors of the file). */
  optimizer: {
    kind: TrainingState['optimizer']
    tensors: Array<Pick<OptimizerTensorState, 'name' | 'layout' | 'step' | 'numel'>>
  }
  /** The LoRA dropout generator after step global_step (std::mt19937 text form). */
  dropout_rng: string
  /** The adapter being trained (attachLora options on resume; PEFT's config at the end). */
  adapter: AdapterSettings
  /** What train_summary.json and the logs need from the steps before: unrounded step losses, pairs, seconds. */
  accumulators: { step_losses: number[]; pairs_done: number; train_seconds: number }
  /** sha256 over the tokenized pairs in order (train_summary.json's data_fingerprint). */
  data_fingerprint: string
  params: TrainParams
  engine_version: string
  backend: string
  saved: string
}

export interface Checkpoint {
  state: CheckpointState
  lora: LoraTensor[]
  training: TrainingState
}

const LORA_PREFIX = 'lora/'
const OPTIM_PREFIX = 'optim/'
const FLOAT_FIELDS = ['m', 'v', 'absmax1', 'absmax2'] as const
const BYTE_FIELDS = ['state1', 'state2'] as const

const floatBytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength)
/** A copy in a fresh, aligned buffer of its own (memcpy; Buffer#slice would only make a view). */
function copyBytes(b: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length)
  out.set(b)
  return out
}
// The file is little-endian, like every platform this app runs on.
const toFloats = (b: Uint8Array) => new Float32Array(copyBytes(b).buffer)

/** The file's parts: tensors lora/<name>, optim/<name>/<field>; metadata format, version, state, data_sha256. */
function checkpointParts(c: Checkpoint): { header: Uint8Array; tensors: RawTensor[] } {
  const tensors: RawTensor[] = c.lora.map((t) => ({
    name: LORA_PREFIX + t.name,
    dtype: 'F32',
    shape: t.shape,
    bytes: floatBytes(t.data),
  }))
  for (const t of c.training.tensors) {
    for (const f of FLOAT_FIELDS) {
      const a = t[f]
      if (a)
        tensors.push({ name: `${OPTIM_PREFIX}${t.name}/${f}`, dtype: 'F32', shape: [a.length], bytes: floatBytes(a) })
    }
    for (const f of BYTE_FIELDS) {
      const a = t[f]
      if (a) tensors.push({ name: `${OPTIM_PREFIX}${t.name}/${f}`, dtype: 'U8', shape: [a.length], bytes: a })
    }
  }
  const digest = createHash('sha256')
  for (const t of tensors) digest.update(t.bytes)
  const header = rawSafetensorsHeader(tensors, {
    format: CHECKPOINT_FORMAT,
    version: String(CHECKPOINT_VERSION),
    state: JSON.stringify(c.state),
    data_sha256: digest.digest('hex'),
  })
  return { header, tensors }
}

/** The checkpoint file's bytes, in memory (tests; writeCheckpoint streams the same bytes to disk). */
export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const { header, tensors } = checkpointParts(c)
  return Buffer.concat([header, ...tensors.map((t) => t.bytes)])
}

/** Reads a checkpoint file's bytes; a damaged, foreign or incomplete file is refused with the file named. */
export function decodeCheckpoint(bytes: Uint8Array, file: string): Checkpoint {
  const bad = (msg: string) => new StudioError('E_BAD_INPUT', `${file}: ${msg}`, { details: { file } })
  const raw = decodeRawSafetensors(bytes, file, ['F32', 'U8'])
  if (raw.metadata.format !== CHECKPOINT_FORMAT)
    throw bad(`not a DPO Studio checkpoint (format ${quoted(raw.metadata.format ?? null)})`)
  if (raw.metadata.version !== String(CHECKPOINT_VERSION)) {
    throw bad(
      `checkpoint version ${quoted(raw.metadata.version ?? null)} is not the version ${CHECKPOINT_VERSION} this build reads`,
    )
  }
  const digest = createHash('sha256').update(raw.data).digest('hex')
  if (digest !== raw.metadata.data_sha256)
    throw bad('the tensor data does not match the checksum in its header (the file is damaged)')
  let state: CheckpointState
  const stateText = raw.metadata.state ?? ''
  try {
    state = parseJson(stateText) as CheckpointState
  } catch (e) {
    throw bad(`the state in its header is ${errorMessage(e)}`)
  }
  if (
    !Number.isInteger(state?.global_step) ||
    state.global_step < 1 ||
    !state.optimizer ||
    !Array.isArray(state.optimizer.tensors)
  ) {
    throw bad('the state in its header lacks global_step or optimizer')
  }
  // The header is not under the data checksum: what goes to the engine is checked here (found by fuzzing, docs/fuzzing.md).
  const badEntry = state.optimizer.tensors.find((t) => !isOptimizerTensorInfo(t))
  if (badEntry !== undefined)
    throw bad(
      `the state in its header has an optimizer tensor that is not {name, layout, step, numel}: ${quoted(badEntry)}`,
    )
  if (typeof state.dropout_rng !== 'string')
    throw bad('the state in its header lacks the dropout generator state (dropout_rng)')
  const byName = new Map(raw.tensors.map((t) => [t.name, t]))
  const lora: LoraTensor[] = raw.tensors
    .filter((t) => t.name.startsWith(LORA_PREFIX))
    .map((t) => ({ name: t.name.slice(LORA_PREFIX.length), shape: t.shape, data: toFloats(t.bytes) }))
  const tensors: OptimizerTensorState[] = state.optimizer.tensors.map((info) => {
    const t: OptimizerTensorState = { name: info.name, layout: info.layout, step: info.step, numel: info.numel }
    const fields =
      info.layout === 'bnb8_blockwise' ? (['state1', 'state2', 'absmax1', 'absmax2'] as const) : (['m', 'v'] as const)
    for (const f of fields) {
      const entry = byName.get(`${OPTIM_PREFIX}${info.name}/${f}`)
      if (!entry) throw bad(`tensor ${bare(`${OPTIM_PREFIX}${info.name}/${f}`)} is missing`)
      if (f === 'state1' || f === 'state2') t[f] = copyBytes(entry.bytes)
      else t[f] = toFloats(entry.bytes)
    }
    return t
  })
  return { state, lora, training: { optimizer: state.optimizer.kind, tensors, dropoutRng: state.dropout_rng } }
}

const LAYOUTS: ReadonlySet<unknown> = new Set<OptimizerTensorState['layout']>(['adamw', 'bnb8_blockwise', 'bnb32'])
const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0
function isOptimizerTensorInfo(t: unknown): boolean {
  const o = t as Partial<OptimizerTensorState> | null
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.name === 'string' &&
    LAYOUTS.has(o.layout) &&
    isCount(o.step) &&
    isCount(o.numel)
  )
}

/** The training state of a checkpoint file's JSON (the arrays are tensors of the file). */
export function optimizerSummary(training: TrainingState): CheckpointState['optimizer'] {
  return {
    kind: training.optimizer,
    tensors: training.tensors.map(({ name, layout, step, numel }) => ({ name, layout, step, numel })),
  }
}

/**
 * Writes RUN_DIR/checkpoint.safetensors: a temp file beside it, every write checked (a short write is retried, none
 * is ignored), flushed to disk, renamed over the old checkpoint, and the folder flushed. A failure leaves the previous
 * checkpoint in place and says which file could not be written.
 */
export function writeCheckpoint(runDir: string, c: Checkpoint): void {
  const file = join(runDir, CHECKPOINT_FILE)
  removeStaleTemps(runDir)
  const tmp = join(runDir, `${TEMP_PREFIX}${process.pid}-${Date.now()}`)
  // Header, then each tensor straight from its array: no second copy of a checkpoint that can be hundreds of MB.
  const { header, tensors } = checkpointParts(c)
  try {
    const fd = openSync(tmp, 'wx')
    try {
      for (const bytes of [header, ...tensors.map((t) => t.bytes)]) {
        let at = 0
        while (at < bytes.length) {
          const n = writeSync(fd, bytes, at, bytes.length - at)
          if (n <= 0) throw new Error(`wrote ${at} of ${bytes.length} bytes of a block`)
          at += n
        }
      }
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
    syncDir(runDir)
  } catch (e) {
    rmSync(tmp, { force: true })
    throw new StudioError('E_IO', `could not write the checkpoint ${file}: ${errorMessage(e)}`, {
      cause: e,
      details: { file },
    })
  }
}

/** The run's checkpoint, or null when it has none. */
export function readCheckpoint(runDir: string): Checkpoint | null {
  const file = join(runDir, CHECKPOINT_FILE)
  if (!existsSync(file)) return null
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (e) {
    throw new StudioError('E_IO', `could not read the checkpoint ${file}: ${errorMessage(e)}`, {
      cause: e,
      details: { file },
    })
  }
  return decodeCheckpoint(bytes, file)
}

/**
 * The JSON state of the run's checkpoint from its header alone (no tensor data read or verified): for listings and
 * early checks. Null when there is no readable checkpoint.
 */
export function readCheckpointState(runDir: string): CheckpointState | null {
  let fd: number
  try {
    fd = openSync(join(runDir, CHECKPOINT_FILE), 'r')
  } catch {
    return null
  }
  try {
    const len = Buffer.alloc(8)
    if (readSync(fd, len, 0, 8, 0) !== 8) return null
    const n = Number(len.readBigUInt64LE(0))
    if (n > 64 * 1024 * 1024) return null
    const header = Buffer.alloc(n)
    if (readSync(fd, header, 0, n, 8) !== n) return null
    const meta = (JSON.parse(header.toString('utf8')) as { __metadata__?: { format?: string; state?: string } })
      .__metadata__
    if (meta?.format !== CHECKPOINT_FORMAT || !meta.state) return null
    const state = JSON.parse(meta.state) as CheckpointState
    return Number.isInteger(state?.global_step) ? state : null
  } catch {
    return null
  } finally {
    closeSync(fd)
  }
}

/** Drops the checkpoint (and temp files a killed write left): after a completed training the adapter is the state. */
export function removeCheckpoint(runDir: string): void {
  rmSync(join(runDir, CHECKPOINT_FILE), { force: true })
  removeStaleTemps(runDir)
}

const TEMP_PREFIX = `.${CHECKPOINT_FILE}.tmp-`

function removeStaleTemps(runDir: string): void {
  let names: string[]
  try {
    names = readdirSync(runDir)
  } catch {
    return
  }
  for (const n of names) if (n.startsWith(TEMP_PREFIX)) rmSync(join(runDir, n), { force: true })
}

/** Makes a rename in `dir` durable (fsync of the folder); where folders cannot be opened (Windows) the OS does it. */
function syncDir(dir: string): void {
  let fd: number
  try {
    fd = openSync(dir, 'r')
  } catch {
    return
  }
  try {
    fsyncSync(fd)
  } catch {
    // some file systems refuse fsync on a directory; the rename itself has happened
  } finally {
    closeSync(fd)
  }
}
