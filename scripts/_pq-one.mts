import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
const buf = await asyncBufferFromFile('/tmp/pq-cur.parquet');
const md = await parquetMetadataAsync(buf);
console.log("metadata ok", String(md.num_rows));
setTimeout(() => { console.log('still reading after 3 s'); process.exit(3); }, 3000).unref();
const rows = await parquetReadObjects({ file: buf, metadata: md });
console.log('rows', rows.length);
