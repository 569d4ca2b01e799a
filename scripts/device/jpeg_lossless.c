/* Lossless JPEG re-encode: the same DCT coefficients, optimised Huffman tables, optionally progressive.
   Build: gcc -O2 -o jpeg_lossless jpeg_lossless.c -ljpeg; use: jpeg_lossless in.jpg out.jpg 0|1 */
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: jpeg_lossless in.jpg out.jpg progressive(0|1)\n"); return 2; }
  struct jpeg_decompress_struct src; struct jpeg_compress_struct dst;
  struct jpeg_error_mgr je1, je2;
  FILE *fi = fopen(argv[1], "rb"), *fo;
  if (!fi) return 3;
  src.err = jpeg_std_error(&je1); jpeg_create_decompress(&src);
  dst.err = jpeg_std_error(&je2); jpeg_create_compress(&dst);
  jpeg_stdio_src(&src, fi);
  jpeg_save_markers(&src, JPEG_COM, 0xFFFF);
  for (int m = 0; m < 16; m++) jpeg_save_markers(&src, JPEG_APP0 + m, 0xFFFF);
  jpeg_read_header(&src, TRUE);
  jvirt_barray_ptr *coef = jpeg_read_coefficients(&src);
  jpeg_copy_critical_parameters(&src, &dst);
  dst.optimize_coding = TRUE;
  if (atoi(argv[3])) jpeg_simple_progression(&dst);
  fo = fopen(argv[2], "wb"); if (!fo) return 4;
  jpeg_stdio_dest(&dst, fo);
  jpeg_write_coefficients(&dst, coef);
  for (jpeg_saved_marker_ptr m = src.marker_list; m; m = m->next)
    jpeg_write_marker(&dst, m->marker, m->data, m->data_length);
  jpeg_finish_compress(&dst); jpeg_destroy_compress(&dst);
  jpeg_finish_decompress(&src); jpeg_destroy_decompress(&src);
  fclose(fi); fclose(fo); return 0;
}
