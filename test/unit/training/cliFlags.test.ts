// `dpo-studio train` / `run` flags: exactly those of docs/architecture.md#command-line, mapped onto the parameter
// schema, with one-line errors that name the flag.
import { describe, expect, it } from 'vitest'
import {
  CliExit,
  RUN_PARAM_FLAGS,
  TRAIN_PARAM_FLAGS,
  givenParams,
  paramsFromFlags,
} from '../../../src-main/cli/commands/trainFlags'
import { buildProgram } from '../../../src-main/cli/main'
import { DEFAULT_TRAIN_PARAMS } from '../../../src-shared/params/trainParams'

const TRAIN_FLAGS = [
  '--model',
  '--dataset',
  '--support-ratio',
  '--data-size',
  '--epochs',
  '--beta',
  '--loss',
  '--label-smoothing',
  '--lr',
  '--lora-r',
  '--lora-alpha',
  '--lora-dropout',
  '--targets',
  '--batch-size',
  '--grad-accum',
  '--warmup-ratio',
  '--max-grad-norm',
  '--optim',
  '--seed',
  '--init-adapter',
  '--system',
  '--backend',
  '--quant',
  '--out',
  // ours (docs/resume.md): checkpoint interval, and continuing a stopped run
  '--checkpoint-every',
  '--resume',
  // ours (docs/model-families.md): the chat template's date and Qwen3's enable_thinking
  '--enable-thinking',
  '--chat-date',
]

const longFlags = (name: string) =>
  buildProgram()
    .commands.find((c) => c.name() === name)!
    .options.map((o) => o.long)
    .sort()

describe('train / run flags', () => {
  it('train has exactly the flags of docs/architecture.md#command-line and the chat-template ones', () => {
    expect(longFlags('train')).toEqual([...TRAIN_FLAGS].sort())
  })

  it("run has train's flags plus --test-prompts and --max-new-tokens", () => {
    expect(longFlags('run')).toEqual([...TRAIN_FLAGS, '--test-prompts', '--max-new-tokens'].sort())
  })

  it('absent flags take the schema defaults (the notebook)', () => {
    expect(paramsFromFlags({}, TRAIN_PARAM_FLAGS)).toEqual(DEFAULT_TRAIN_PARAMS)
  })

  it('maps kebab-case flags onto the schema fields', () => {
    const p = paramsFromFlags(
      {
        supportRatio: '0.3',
        dataSize: '20',
        epochs: '2',
        beta: '0.2',
        loss: 'ipo',
        labelSmoothing: '0.1',
        lr: '1e-4',
        loraR: '8',
        loraAlpha: '32',
        loraDropout: '0',
        targets: 'q_proj, k_proj,v_proj',
        batchSize: '2',
        gradAccum: '4',
        warmupRatio: '0',
        maxGradNorm: '0',
        optim: 'adamw',
        seed: '7',
        system: 'Be brief.',
        backend: 'cpu',
        quant: 'none',
        maxNewTokens: '50',
      },
      [...TRAIN_PARAM_FLAGS, ...RUN_PARAM_FLAGS],
    )
    expect(p).toMatchObject({
      supportRatio: 0.3,
      dataSize: 20,
      epochs: 2,
      beta: 0.2,
      lossType: 'ipo',
      labelSmoothing: 0.1,
      learningRate: 1e-4,
      loraR: 8,
      loraAlpha: 32,
      loraDropout: 0,
      targets: ['q_proj', 'k_proj', 'v_proj'],
      batchSize: 2,
      gradAccum: 4,
      warmupRatio: 0,
      maxGradNorm: 0,
      optim: 'adamw',
      seed: 7,
      systemMessage: 'Be brief.',
      backend: 'cpu',
      quant: 'none',
      maxNewTokens: 50,
    })
  })

  it.each([
    [{ beta: '0' }, "--beta must be > 0, got '0'"],
    [{ beta: 'abc' }, "--beta must be a number, got 'abc'"],
    [{ loraR: '1.5' }, "--lora-r must be an integer, got '1.5'"],
    [{ epochs: '0' }, "--epochs must be >= 1, got '0'"],
    [{ labelSmoothing: '0.5' }, "--label-smoothing must be < 0.5, got '0.5'"],
    [{ loss: 'dpo' }, "--loss must be one of sigmoid, ipo, hinge, robust, got 'dpo'"],
    [
      { targets: 'q_proj,lm_head' },
      "--targets entries must each be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, got 'lm_head'",
    ],
    [{ targets: ',' }, '--targets needs at least 1 entry'],
    [{ supportRatio: '' }, "--support-ratio must be a number, got ''"],
  ])('%o -> %s', (flags, message) => {
    let err: unknown
    try {
      paramsFromFlags(flags, TRAIN_PARAM_FLAGS)
    } catch (e) {
      err = e
    }
    expect((err as Error).message).toBe(message)
    expect((err as { code: string }).code).toBe('E_BAD_ARGS')
  })

  it('givenParams keeps only the flags given: what a resume compares with the run', () => {
    expect(givenParams({ lr: '1e-3', checkpointEvery: '5', out: '/x' }, TRAIN_PARAM_FLAGS)).toEqual({
      learningRate: 1e-3,
      checkpointEvery: 5,
    })
    expect(givenParams({}, TRAIN_PARAM_FLAGS)).toEqual({})
    expect(() => givenParams({ checkpointEvery: '-1' }, TRAIN_PARAM_FLAGS)).toThrow(
      "--checkpoint-every must be >= 0, got '-1'",
    )
  })

  it('a clean stop carries exit code 130', () => {
    expect(new CliExit(130, 'cancelled').exitCode).toBe(130)
  })
})
