/** src/shared/group-commit.ts: many callers, one commit; nobody hears back before their commit. */
import { describe, expect, test } from "bun:test";
import { GroupCommit } from "../../src/shared/group-commit.ts";

describe("GroupCommit", () => {
  test("items submitted in one turn share one commit, and each gets its own result in order", async () => {
    const commits: number[][] = [];
    const group = new GroupCommit<number, string>({ commit: (items) => (commits.push(items), items.map((n) => `stored ${n}`)) });
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => group.submit(n)));
    expect(results).toEqual(["stored 1", "stored 2", "stored 3", "stored 4", "stored 5"]);
    expect(commits).toEqual([[1, 2, 3, 4, 5]]);
  });

  test("a commit that answers for fewer items than it was given fails every one of them (none hears 'committed' unanswered)", async () => {
    const group = new GroupCommit<number, string>({ commit: (items) => items.slice(1).map((n) => `stored ${n}`) });
    const outcomes = await Promise.allSettled([1, 2, 3].map((n) => group.submit(n)));
    expect(outcomes.map((o) => o.status)).toStrictEqual(["rejected", "rejected", "rejected"]);
    expect(String((outcomes[0] as PromiseRejectedResult).reason)).toContain("2 results for 3 items");
  });

  test("no promise settles before the commit holding its item has finished", async () => {
    let finishCommit!: () => void;
    const committed: number[] = [];
    const group = new GroupCommit<number, number>({
      commit: (items) =>
        new Promise<number[]>((resolve) => {
          finishCommit = () => {
            committed.push(...items);
            resolve(items);
          };
        }),
    });
    const settled: number[] = [];
    const all = [1, 2].map((n) => group.submit(n).then((r) => settled.push(r)));
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toEqual([]);
    // submitted while the first commit is in flight: waits for the next one
    const late = group.submit(3).then((r) => settled.push(r));
    finishCommit();
    await Promise.all(all);
    expect(settled).toEqual([1, 2]);
    await new Promise((r) => setTimeout(r, 20));
    finishCommit();
    await late;
    expect(committed).toEqual([1, 2, 3]);
  });

  test("a batch holds at most maxItems items and maxBytes bytes; a larger item goes alone", async () => {
    const commits: string[][] = [];
    const group = new GroupCommit<string, string>({ commit: (items) => (commits.push(items), items), maxItems: 3, maxBytes: 10, bytesOf: (s) => s.length });
    await Promise.all(["a", "b", "c", "d", "eeeeeeeeeeee", "ffff", "gggggg", "h"].map((s) => group.submit(s)));
    expect(commits).toEqual([["a", "b", "c"], ["d"], ["eeeeeeeeeeee"], ["ffff", "gggggg"], ["h"]]);
  });

  test("after a commit of several, one more turn lets the next items join the first of them; after a commit of one, nothing waits", async () => {
    const commits: number[][] = [];
    const group = new GroupCommit<number, number>({ commit: (items) => (commits.push(items), items) });
    const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
    // submitted one turn apart: item b arrives on the turn after item a's
    const oneTurnApart = async (a: number, b: number) => {
      const first = group.submit(a);
      await nextTurn();
      await Promise.all([first, group.submit(b)]);
    };
    await Promise.all([1, 2, 3].map((n) => group.submit(n)));
    await oneTurnApart(4, 5);
    expect(commits).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    await group.submit(6); // a commit of one
    await oneTurnApart(7, 8);
    expect(commits.slice(2)).toEqual([[6], [7], [8]]);
  });

  test("a failed commit rejects every item in it, and the next batch is tried afresh", async () => {
    let fail = true;
    const group = new GroupCommit<number, number>({
      commit: (items) => {
        if (fail) throw new Error("disk full");
        return items;
      },
    });
    const first = await Promise.allSettled([group.submit(1), group.submit(2)]);
    expect(first.map((r) => r.status)).toStrictEqual(["rejected", "rejected"]);
    fail = false;
    expect(await group.submit(3)).toBe(3);
  });
});
