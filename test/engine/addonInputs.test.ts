// The addon's input checks (native/addon/enum_names.cpp, convert.cpp): a bad enum name is refused with E_BAD_INPUT
// and a message that names the field and lists every allowed value; a bad scored sequence names its row and field;
// the names the addon hands back (quant, optimizer, layouts) are the ones it accepts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import type { NativeModel } from '../../src-main/addon/addonTypes'
import { sharedPath } from '../helpers/sharedPath'

const STORIES = sharedPath('models/stories260K')

/** Calls fn and returns what it threw (the addon throws synchronously for bad arguments). */
function thrown(fn: () => unknown): { code?: string; message?: string } {
  try {
    fn()
  } catch (e) {
    return e as { code?: string; message?: string }
  }
  throw new Error('expected a throw')
}

// The casts below hand the addon what TypeScript would refuse, as a caller from plain JS could.
const bad = <T>(v: string) => v as unknown as T

describe('addon enum names', () => {
  const native = loadAddon()

  it('refuses a bad quant, naming the field and both allowed values', () => {
    const e = thrown(() => native.loadModel(STORIES, { quant: bad('nf8'), backend: 'cpu' }))
    expect(e).toMatchObject({ code: 'E_BAD_INPUT', message: "quant must be 'nf4' or 'none', got 'nf8'" })
    expect(thrown(() => native.checkModel(STORIES, { quant: bad('int8') }))).toMatchObject({
      code: 'E_BAD_INPUT',
      message: "quant must be 'nf4' or 'none', got 'int8'",
    })
  })

  it('refuses a bad backend and a bad GGML kind the same way', () => {
    expect(thrown(() => native.loadModel(STORIES, { quant: 'none', backend: bad('metal') }))).toMatchObject({
      code: 'E_BAD_INPUT',
      message: "backend must be 'auto', 'cpu' or 'cuda', got 'metal'",
    })
    expect(thrown(() => native.exportOps.ggmlEncode(bad('q5_k'), new Float32Array(32)))).toMatchObject({
      code: 'E_BAD_INPUT',
      message: "ggmlEncode: kind must be 'f16', 'q8_0' or 'q4_0', got 'q5_k'",
    })
  })

  describe('on a loaded model', () => {
    let model: NativeModel
    beforeAll(async () => {
      model = await native.loadModel(STORIES, { quant: 'none', backend: 'cpu' })
      model.attachLora({ targets: ['q_proj', 'v_proj'], r: 2, alpha: 4, dropout: 0, seed: 1 })
    })
    afterAll(() => model?.dispose())

    const seq = { ids: [1, 5, 6], labels: [-100, 5, 6] }
    const pair = { chosen: seq, rejected: seq, refChosen: -1, refRejected: -1 }

    it('hands back names it accepts', () => {
      expect(model.info().quant).toBe('none')
      const st = model.exportTrainingState()
      expect(st.optimizer).toBe('none')
      expect(() => model.importTrainingState(st)).not.toThrow()
    })

    it('refuses a bad loss type, optimizer kind, saved optimizer and layout', () => {
      expect(
        thrown(() =>
          model.dpoAccumulate([pair], 0, { beta: 0.1, lossType: bad('kto'), labelSmoothing: 0, gradScale: 1 }),
        ),
      ).toMatchObject({
        code: 'E_BAD_INPUT',
        message: "lossType must be 'sigmoid', 'ipo', 'hinge' or 'robust', got 'kto'",
      })
      expect(
        thrown(() =>
          model.optimizerStep({
            kind: bad('sgd'),
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weightDecay: 0,
            maxGradNorm: 1,
          }),
        ),
      ).toMatchObject({
        code: 'E_BAD_INPUT',
        message: "optimizer kind must be 'adamw' or 'paged_adamw_8bit', got 'sgd'",
      })
      expect(
        thrown(() => model.importTrainingState({ optimizer: bad('sgd'), dropoutRng: '', tensors: [] })),
      ).toMatchObject({
        code: 'E_BAD_INPUT',
        message: "importTrainingState: optimizer must be 'none', 'adamw' or 'paged_adamw_8bit', got 'sgd'",
      })
      const tensor = { name: 't0', layout: bad('bnb4'), step: 1, numel: 2 }
      expect(
        thrown(() => model.importTrainingState({ optimizer: 'adamw', dropoutRng: '', tensors: [tensor] as never })),
      ).toMatchObject({
        code: 'E_BAD_INPUT',
        message: "optimizer state of t0: layout must be 'adamw', 'bnb8_blockwise' or 'bnb32', got 'bnb4'",
      })
    })

    it('names the row and field of a bad scored sequence', () => {
      expect(thrown(() => model.logps([seq, { ids: [1, 'x' as never], labels: [1, 2] }], 0))).toMatchObject({
        code: 'E_BAD_INPUT',
        message: 'sequence 1.ids[1] is not a number',
      })
      expect(thrown(() => model.sftAccumulate([bad('text')], 0, 1))).toMatchObject({
        code: 'E_BAD_INPUT',
        message: 'sequence 0 must be an object with ids and labels',
      })
      expect(
        thrown(() =>
          model.dpoAccumulate([pair, { ...pair, rejected: { ids: seq.ids, labels: bad('none') } }], 0, {
            beta: 0.1,
            lossType: 'sigmoid',
            labelSmoothing: 0,
            gradScale: 1,
          }),
        ),
      ).toMatchObject({
        code: 'E_BAD_INPUT',
        message: 'pair 1 rejected.labels must be an Int32Array or an array of integers',
      })
    })
  })
})
