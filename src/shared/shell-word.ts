/**
 * A path (or any word) as a POSIX shell reads it back as one word: as it is when it holds only
 * characters no shell treats specially, else in single quotes (a quote inside as '\''). For the
 * fix-it commands messages print for a user to copy (`sudo chown pi: '/home/pi/my things'`).
 */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
