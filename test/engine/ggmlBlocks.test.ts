// The engine's Q8_0 / Q4_0 / F16 encoders (native/src/export/export_ops.cpp) against an independent scalar copy of
// ggml's reference rounding rules (docs/exports.md), byte for byte, on random blocks and the edge cases: an all-zero
// block, a block whose extreme is negative, values exactly half-way between codes.
import { describe, expect, it } from 'vitest'
import { loadAddon } from '../../src-main/addon/loadAddon'
import { halfToFloat } from '../../src-main/services/training/adapterFiles'
import { seeded } from '../helpers/exportFixtures'

const f32 = Math.fround
/** binary16 bits of x, round to nearest even, via the exact value set (independent of the engine's conversion). */
function f16bits(x: number): number {
  const out = new Uint16Array(1)
  let best = 0
  let bestErr = Infinity
  // Binary search over the monotone positive half of the encoding, then pick the nearest (ties to even).
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0
  const a = Math.abs(x)
  let lo = 0,
    hi = 0x7c00
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if (halfToFloat(mid) <= a) lo = mid
    else hi = mid - 1
  }
  for (const c of [lo, lo + 1]) {
    if (c > 0x7c00) continue
    const err = Math.abs(halfToFloat(c) - a)
    if (err < bestErr || (err === bestErr && (c & 1) === 0)) {
      best = c
      bestErr = err
    }
  }
  out[0] = sign | best
  return out[0]!
}

function q8Ref(x: Float32Array): number[] {
  const out: number[] = []
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b + j]!))
    const d = f32(amax / 127)
    const id = d ? f32(1 / d) : 0
    const h = f16bits(d)
    out.push(h & 0xff, h >> 8)
    for (let j = 0; j < 32; j++) {
      const v = f32(x[b + j]! * id)
      out.push((Math.sign(v) * Math.round(Math.abs(v))) & 0xff) // roundf: half away from zero
    }
  }
  return out
}

function q4Ref(x: Float32Array): number[] {
  const out: number[] = []
  for (let b = 0; b < x.length; b += 32) {
    let amax = 0,
      vmax = 0
    for (let j = 0; j < 32; j++)
      if (amax < Math.abs(x[b + j]!)) {
        amax = Math.abs(x[b + j]!)
        vmax = x[b + j]!
      }
    const d = f32(vmax / -8)
    const id = d ? f32(1 / d) : 0
    const h = f16bits(d)
    out.push(h & 0xff, h >> 8)
    const code = (v: number) => Math.min(15, Math.trunc(f32(f32(v * id) + 8.5)))
    for (let j = 0; j < 16; j++) out.push(code(x[b + j]!) | (code(x[b + 16 + j]!) << 4))
  }
  return out
}

function blocks(seed: number): Float32Array {
  const rnd = seeded(seed)
  const x = new Float32Array(32 * 64)
  for (let i = 0; i < x.length; i++) x[i] = (rnd() - 0.5) * (1 + 10 * rnd())
  x.fill(0, 0, 32) // an all-zero block
  for (let j = 0; j < 32; j++) x[32 + j] = j === 5 ? -3 : (j - 16) * 0.375 // negative extreme; values on the Q4 grid
  for (let j = 0; j < 32; j++) x[64 + j] = j === 0 ? 127 : j - 16 + 0.5 // Q8 step 1: values half-way between codes
  return x
}

describe('ggml block encoders', () => {
  const ops = loadAddon().exportOps
  it.each([1, 2, 3])('Q8_0 and Q4_0 equal the reference rounding byte for byte (seed %i)', (seed) => {
    const x = blocks(seed)
    expect([...ops.ggmlEncode('q8_0', x)]).toEqual(q8Ref(x))
    expect([...ops.ggmlEncode('q4_0', x)]).toEqual(q4Ref(x))
  })

  it('decodes within half a step: Q8_0 |x - q d| <= d / 2, Q4_0 <= |d| (one code clamps)', () => {
    const x = blocks(9)
    const q8 = ops.ggmlEncode('q8_0', x)
    const q4 = ops.ggmlEncode('q4_0', x)
    for (let b = 0; b < x.length / 32; b++) {
      const d8 = halfToFloat(q8[b * 34]! | (q8[b * 34 + 1]! << 8))
      const d4 = halfToFloat(q4[b * 18]! | (q4[b * 18 + 1]! << 8))
      for (let j = 0; j < 32; j++) {
        const v = x[b * 32 + j]!
        const c8 = (q8[b * 34 + 2 + j]! << 24) >> 24
        expect(Math.abs(v - c8 * d8)).toBeLessThanOrEqual(d8 / 2 + 1e-3 * Math.abs(v) + 1e-12)
        const byte = q4[b * 18 + 2 + (j % 16)]!
        const c4 = (j < 16 ? byte & 15 : byte >> 4) - 8
        expect(Math.abs(v - c4 * d4)).toBeLessThanOrEqual(Math.abs(d4) * 1.001 + 1e-12)
      }
    }
  })

  it('F16 is IEEE binary16 with round to nearest even; other lengths are refused', () => {
    const x = Float32Array.from([0, -0, 1, 65504, 65520, 1e-8, 6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -2.5])
    const got = new Uint16Array(ops.ggmlEncode('f16', x).buffer)
    expect([...got]).toEqual([...x].map((v) => (Math.abs(v) >= 65520 ? (v < 0 ? 0xfc00 : 0x7c00) : f16bits(v))))
    expect(() => ops.ggmlEncode('q4_0', new Float32Array(33))).toThrow(/multiple of 32/)
  })
})
