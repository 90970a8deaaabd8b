// Chart axes and answer counts (issue 12 item 15): one number format per axis whose neighbouring ticks differ, a
// visible range when every point is equal (step 1), CJK answers counted in characters, and the CUDA reason in words.
import { describe, expect, it } from 'vitest'
import { yAxisFor } from '../../../src-renderer/src/lib/axisFormat'
import { cpuReason } from '../../../src-renderer/src/lib/backendText'
import { isCjkText, textChars } from '../../../src-renderer/src/lib/textUnits'

/** ECharts-like ticks: multiples of a nice interval (1, 2, 5 x 10^k) near span / 5 over the range. */
function ticks(lo: number, hi: number): number[] {
  const raw = (hi - lo) / 5
  const k = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * k).find((s) => s >= raw / 2 && s <= raw * 1.5) ?? k
  const out: number[] = []
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v)
  return out
}
function labels(values: number[], percent = false): string[] {
  const a = yAxisFor(values, percent)
  const lo = a.min ?? Math.min(...values)
  const hi = a.max ?? Math.max(...values)
  return ticks(lo, hi).map(a.format)
}

describe('yAxisFor', () => {
  it('one value (a run at step 1): a range around it and five different labels', () => {
    const a = yAxisFor([Math.LN2, Math.LN2])
    expect(a.min).toBeLessThan(Math.LN2)
    expect(a.max).toBeGreaterThan(Math.LN2)
    const l = labels([Math.LN2])
    expect(new Set(l).size).toBe(l.length)
    expect(l.length).toBeGreaterThanOrEqual(3)
  })

  it('loss, learning rate, gradient norm and accuracy: distinct labels in one format each', () => {
    for (const [values, percent] of [
      [[0.6931, 0.69, 0.67, 0.62, 0.55], false],
      [[0, 5e-5, 1e-4, 2e-4, 1.5e-4], false],
      [[0.8, 2.4, 7.9, 3.1], false],
      [[0.6931, 0.6932], false],
      [[0, 0.25, 0.5, 1], true],
    ] as Array<[number[], boolean]>) {
      const l = labels(values, percent)
      expect(new Set(l).size, l.join(' ')).toBe(l.length)
      const kinds = new Set(
        l.filter((x) => x !== '0').map((x) => (x.includes('e') ? 'exp' : x.endsWith('%') ? 'pct' : 'fixed')),
      )
      expect(kinds.size, l.join(' ')).toBe(1)
    }
    expect(labels([0, 5e-5, 1e-4, 2e-4])).toContain('1.0e-4')
  })
})

describe('textUnits and backendText', () => {
  it('CJK text is counted in characters, without spaces and punctuation', () => {
    expect(isCjkText('市中心禁車能讓街道更乾淨。')).toBe(true)
    expect(isCjkText('The city centre should ban cars.')).toBe(false)
    expect(isCjkText('DPO 訓練')).toBe(false) // 3 Latin letters, 2 Han
    expect(textChars('禁車，好！ ok')).toBe(5)
  })

  it('says "No NVIDIA GPU found" and keeps the runtime error as details', () => {
    expect(
      cpuReason({ cudaCompiled: true, cudaAvailable: false, cudaReason: 'cudaGetDeviceCount failed: error 100' }),
    ).toEqual({
      headline: 'No NVIDIA GPU found, computing on the CPU.',
      details: 'cudaGetDeviceCount failed: error 100 (the driver reports no CUDA-capable device)',
    })
    expect(cpuReason({ cudaCompiled: false, cudaAvailable: false, cudaReason: '' }).headline).toBe(
      'This engine build has no CUDA backend, so it computes on the CPU.',
    )
  })
})
