// Mirrors a child's stderr to ours and keeps its last 4000 characters, so a crash report can say what it printed.
/** What both a node ChildProcess's and an Electron UtilityProcess's stderr offer. */
interface TextStream {
  setEncoding(encoding: BufferEncoding): unknown
  on(event: 'data', listener: (chunk: string) => void): unknown
}

export function mirrorStderrTail(stream: TextStream | null | undefined): () => string {
  let tail = ''
  stream?.setEncoding('utf8')
  stream?.on('data', (d: string) => {
    process.stderr.write(d)
    tail = (tail + d).slice(-4000)
  })
  return () => tail
}
