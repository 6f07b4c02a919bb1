"""Image metrics as published tables compute them (PSNR, SSIM, LPIPS) and the evaluation of a renderer on a data set."""
