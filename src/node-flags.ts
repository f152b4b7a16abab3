// The node flags the server runs with. `npm start`, the s3dedup bin's shebang, the Dockerfile and
// the bench pass them on the command line (V8 takes them only at start: not from NODE_OPTIONS, and
// setting them from inside a running process crashes it); a WORKERS primary adds them to each
// worker. test/config/node-flags.test.ts keeps those places in step with this list.

/**
 * `--no-concurrent-marking`: V8 marks the old generation on the main thread (incrementally, with
 * parallel helpers only in the final pause) instead of on its background threads. The server's
 * heap stays small (12-50 MB), but a large upload passes each byte through about three
 * short-lived buffers (the socket's read, the block, the stored segment), so V8 starts a
 * mark-compact about every 40 ms, 23-35 of them per 256 MiB PUT. Their concurrent marking cost
 * 0.4-0.6 s of CPU per PUT on top of the event loop's 1.0 s, on a 2-core machine that the event
 * loop, the thread pool and the client share; on the main thread a heap this small takes 1-4 ms
 * a collection. A 256 MiB random PUT (the bench's client, fresh server and content each time):
 * 1227-1490 -> 975-1017 ms, server CPU 1.5-1.9 -> 1.1-1.2 s. The price: collections finish
 * later, so peaks run some 10-20 MB higher. Young-generation collections stay parallel:
 * `--single-threaded-gc` gained as much here but cost small GETs about 8% (bench/README.md,
 * "Garbage collection threads").
 *
 * `--max-semi-space-size=4` (MiB; V8's default is 16): a young generation a quarter the size,
 * collected more often, each collection as cheap (few objects survive one). V8 starts marking
 * the old generation once the room left under its limit is less than the young generation's
 * capacity, so with the default a heap of 20 MB began a mark-compact every 100-150 ms of a large
 * GET from S3. Measured on one server after 5 s of small PUTs, three 256 MiB GETs from moto, 4
 * rounds: 6-16 mark-compacts against 14-39, GETs median 668 against 776 ms; small files 3
 * rounds: GET 34159-37318 against 32578-34579 req/s, PUT within noise, VmHWM 176-180 against
 * 208-209 MB (bench/README.md, "The young generation"). Workers had it first (bench/README.md,
 * "WORKERS and memory"); src/cluster.ts passes these flags on to them.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--no-concurrent-marking', '--max-semi-space-size=4'];

/**
 * The flags a WORKERS primary adds for its workers only, where every worker's heap counts again:
 *
 * `--max-old-space-size=2047` (MiB; V8's default here is about 4 GiB). V8 lets the old
 * generation grow, before its next mark-compact, by up to 4x what the last one kept when its heap
 * limit is 2 GiB or more, and by at most 2x below that (heap-controller.cc, MaxGrowingFactor). A
 * worker keeps 15-25 MB live, so under small-file load each one settled near 115 MB of PSS
 * instead of 80-90. Two workers, wrk PUTs at 16 and 64 connections then GETs of 2000 files, then a
 * 256 MiB PUT and two GETs: summed PSS after the small files 254-257 -> 188-200 MB, peak 283-293
 * -> 236-260; 2048 measured as the default, 2000 and 1024 alike (bench/README.md, "The workers'
 * heap limit"). Only a heap of JS objects is capped, not the buffers, and a worker keeps 2 GiB.
 */
export const WORKER_NODE_FLAGS: readonly string[] = ['--max-old-space-size=2047'];

/** The option a node flag sets, in one spelling: `--max_old_space_size=8` and `--no-x` name `max-old-space-size` and `x`. */
export const flagOption = (arg: string): string => arg.replace(/^--(no-)?/, '').replace(/=.*$/, '').replace(/_/g, '-');
