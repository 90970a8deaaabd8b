// A one-line progress bar on stderr with rate and ETA; on a non-TTY it prints a line every 10%.
export class ProgressBar {
  private readonly start = Date.now()
  private lastDecile = -1
  private done = false

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = '',
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  update(current: number, note = ''): void {
    if (this.done) return
    const frac = this.total > 0 ? Math.min(1, current / this.total) : 1
    const elapsed = (Date.now() - this.start) / 1000
    const rate = elapsed > 0 ? current / elapsed : 0
    const eta = rate > 0 && frac < 1 ? (this.total - current) / rate : 0
    const stats =
      `${Math.round(frac * 100)}% ${current}/${this.total}${this.unit ? ' ' + this.unit : ''}` +
      (rate > 0 ? ` ${rate.toFixed(1)}/s` : '') +
      (eta > 0 ? ` ETA ${formatSeconds(eta)}` : '') +
      (note ? ` ${note}` : '')
    if (this.stream.isTTY) {
      const width = 24
      const filled = Math.round(frac * width)
      this.stream.write(`\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${stats}\x1b[K`)
    } else {
      const decile = Math.floor(frac * 10)
      if (decile !== this.lastDecile) {
        this.lastDecile = decile
        this.stream.write(`${this.label}: ${stats}\n`)
      }
    }
  }

  finish(note = ''): void {
    if (this.done) return
    this.update(this.total, note)
    this.done = true
    if (this.stream.isTTY) this.stream.write('\n')
  }
}

export function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`
  const m = Math.floor(s / 60)
  return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`
}
