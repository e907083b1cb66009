/** Test data: a Parquet file of chat records (a `messages` list of {role, content} structs), as HF datasets ship them. */
import { parquetWriteFile } from 'hyparquet-writer';

export function writeChatParquet(filename: string, conversations: Array<Array<{ role: string; content: string }>>): void {
  parquetWriteFile({
    filename,
    columnData: [{ name: 'messages', data: conversations }],
    schema: [
      { name: 'root', num_children: 1 },
      { name: 'messages', repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
      { name: 'role', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: 'content', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ],
  } as Parameters<typeof parquetWriteFile>[0]);
}
