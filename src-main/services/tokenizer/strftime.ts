// Python's datetime.strftime in the C locale, for chat templates' strftime_now (transformers defines it as
// datetime.now().strftime(format)): English day and month names whatever the host's locale, so a recorded date
// renders the same text everywhere. Directives Python would pass through unknown stay as written.
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
]
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']

const pad = (n: number, width = 2) => String(n).padStart(width, '0')

function dayOfYear(d: Date): number {
  const start = new Date(d.getFullYear(), 0, 1)
  return Math.round((new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() - start.getTime()) / 86_400_000) + 1
}

/** `date` (local time) formatted as Python's strftime(format) would, C locale. */
export function strftime(date: Date, format: string): string {
  return format.replace(/%([a-zA-Z%])/g, (token, d: string) => {
    const h = date.getHours()
    switch (d) {
      case 'Y':
        return String(date.getFullYear())
      case 'y':
        return pad(date.getFullYear() % 100)
      case 'm':
        return pad(date.getMonth() + 1)
      case 'd':
        return pad(date.getDate())
      case 'e':
        return String(date.getDate()).padStart(2, ' ')
      case 'b':
      case 'h':
        return MONTHS[date.getMonth()]!.slice(0, 3)
      case 'B':
        return MONTHS[date.getMonth()]!
      case 'a':
        return DAYS[date.getDay()]!.slice(0, 3)
      case 'A':
        return DAYS[date.getDay()]!
      case 'w':
        return String(date.getDay())
      case 'j':
        return pad(dayOfYear(date), 3)
      case 'H':
        return pad(h)
      case 'I':
        return pad(h % 12 === 0 ? 12 : h % 12)
      case 'p':
        return h < 12 ? 'AM' : 'PM'
      case 'M':
        return pad(date.getMinutes())
      case 'S':
        return pad(date.getSeconds())
      case 'F':
        return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`
      case 'D':
        return `${pad(date.getMonth() + 1)}/${pad(date.getDate())}/${pad(date.getFullYear() % 100)}`
      case '%':
        return '%'
      default:
        return token
    }
  })
}
