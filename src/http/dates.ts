// Filetracker versions travel as RFC 2822 dates with whole seconds.
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const ZONES: Record<string, number> = { GMT: 0, UT: 0, UTC: 0, Z: 0, EST: -300, EDT: -240, CST: -360, CDT: -300, MST: -420, MDT: -360, PST: -480, PDT: -420 };

const RFC2822 =
  /^\s*(?:[A-Za-z]{3},?\s+)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[A-Za-z]{1,3})?\s*$/;

/**
 * Parses an RFC 2822 date ("Wed, 25 Nov 2026 00:54:24 GMT", "+0000" and "-0000" too) into
 * Unix seconds; null when it is not one.
 */
export function parseRfc2822(text: string): number | null {
  const m = RFC2822.exec(text);
  if (!m) return null;
  const [, dd, mon, yy, hh, mi, ss, zone] = m;
  const month = MONTHS.indexOf(mon.toLowerCase());
  if (month < 0) return null;
  let year = Number(yy);
  if (yy.length === 2) year += year < 50 ? 2000 : 1900;
  else if (yy.length === 3) year += 1900;
  const day = Number(dd), hour = Number(hh), minute = Number(mi), second = ss === undefined ? 0 : Number(ss);
  if (day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return null;
  let offsetMinutes = 0;
  if (zone !== undefined) {
    if (/^[+-]\d{4}$/.test(zone)) {
      const sign = zone[0] === '-' ? -1 : 1;
      offsetMinutes = sign * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5)));
    } else {
      const z = ZONES[zone.toUpperCase()];
      if (z === undefined) return null;
      offsetMinutes = z;
    }
  }
  const ms = Date.UTC(year, month, day, hour, minute, second);
  if (new Date(ms).getUTCDate() !== day) return null; // 31 Feb and the like
  return ms / 1000 - offsetMinutes * 60;
}

/** Unix seconds as "Www, DD Mon YYYY HH:MM:SS GMT". */
export function formatHttpDate(seconds: number): string {
  const d = new Date(seconds * 1000);
  const p = (v: number) => String(v).padStart(2, '0');
  const mon = MONTHS[d.getUTCMonth()];
  return `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${mon[0].toUpperCase()}${mon.slice(1)} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} GMT`;
}
